package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is a *net.TCPConn whose Read and Write make raw system calls.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn

	rmu    sync.Mutex // one Read at a time: the fields below are its
	rbuf   []byte
	rn     int
	rerrno unix.Errno
	readFn func(fd uintptr) bool // c.read, bound once: no allocation per Read

	wmu     sync.Mutex // one Write at a time
	wbuf    []byte
	wn      int
	werrno  unix.Errno
	writeFn func(fd uintptr) bool
}

// Wrap returns c reading and writing with raw system calls.
func Wrap(c *net.TCPConn) (*Conn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	rc := &Conn{TCPConn: c, raw: raw}
	rc.readFn, rc.writeFn = rc.read, rc.write
	return rc, nil
}

// Read reads like (*net.TCPConn).Read: at most len(b) bytes, io.EOF once
// the peer has closed its side, a *net.OpError otherwise.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerrno = b, 0, 0
	err := c.raw.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil: // closed, or the read deadline passed while waiting
		return 0, renamed(err, "read")
	case c.rerrno != 0:
		return 0, c.opError("read", c.rerrno)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// read is the RawConn callback of Read: false asks the poller to wait.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			c.rn = int(n)
		default:
			c.rerrno = e
		}
		return true
	}
}

// Write writes all of b, like (*net.TCPConn).Write, waiting in the poller
// while the socket's send buffer is full.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werrno = b, 0, 0
	err := c.raw.Write(c.writeFn)
	n := c.wn
	c.wbuf = nil
	switch {
	case err != nil:
		return n, renamed(err, "write")
	case c.werrno != 0:
		return n, c.opError("write", c.werrno)
	}
	return n, nil
}

// write is the RawConn callback of Write: false asks the poller to wait
// until the socket is writable again.
func (c *Conn) write(fd uintptr) bool {
	for len(c.wbuf) > 0 {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.wbuf[0])), uintptr(len(c.wbuf)))
		switch e {
		case 0:
			c.wn += int(n)
			c.wbuf = c.wbuf[n:]
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// opError is the error net would return for errno.
func (c *Conn) opError(op string, errno unix.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// renamed gives an error of RawConn (whose Op is "raw-read" or
// "raw-write") the Op of the plain call, so logs read as they would
// without this package.
func renamed(err error, op string) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		o := *oe
		o.Op = op
		return &o
	}
	return err
}

// Listener wraps ln so that the TCP connections it accepts are *Conn.
// Connections of other kinds, and any it cannot wrap, are returned as
// accepted.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	rc, err := Wrap(tc)
	if err != nil {
		return c, nil
	}
	return rc, nil
}
