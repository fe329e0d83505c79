//go:build !linux

package proxy

import "net"

// canWatch is false: outside Linux the fasthttp front does not notice a
// client that hangs up while it waits (its wait still ends with the fill).
func canWatch(net.Conn) bool { return false }

func hungUp(net.Conn) bool { return false }
