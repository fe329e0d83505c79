//go:build !linux

package rawio

import "net"

// Supported reports whether Listen's connections use raw system calls on
// this platform: only on Linux.
const Supported = false

// Listener returns ln unchanged: outside Linux connections keep the
// standard library's reads and writes.
func Listener(ln net.Listener) net.Listener { return ln }
