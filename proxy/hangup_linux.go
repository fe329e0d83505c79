package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// canWatch reports whether hungUp can tell about conn: a connection with a
// file descriptor (TCP, Unix), not an in-memory one.
func canWatch(conn net.Conn) bool {
	_, ok := conn.(syscall.Conn)
	return ok
}

// hungUp reports whether conn's peer has closed its side or reset the
// connection, without reading from it (bytes of a pipelined next request
// stay where they are): poll(2) with POLLRDHUP and no wait.
func hungUp(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
			gone = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}
