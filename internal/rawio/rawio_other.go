//go:build !linux

package rawio

import "net"

// Listener returns ln unchanged: outside Linux connections keep the
// standard library's reads and writes.
func Listener(ln net.Listener) net.Listener { return ln }
