package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a connection accepted through Listener and its client end.
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wl := Listener(ln)
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := wl.Accept()
		ch <- accepted{c, err}
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	rc, ok := a.c.(*Conn)
	if !ok {
		t.Fatalf("Accept returned %T, want *rawio.Conn", a.c)
	}
	t.Cleanup(func() { rc.Close(); client.Close() })
	return rc, client.(*net.TCPConn)
}

// TestRoundTrip moves more than the socket buffers hold both ways, so
// that writes meet a full buffer and wait in the poller, and checks every
// byte.
func TestRoundTrip(t *testing.T) {
	c, client := pair(t)
	payload := make([]byte, 8<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	var got, echoed []byte
	var werr, rerr error
	go func() { // server: read everything the client sends
		defer wg.Done()
		got, rerr = io.ReadAll(io.LimitReader(c, int64(len(payload))))
	}()
	go func() {
		defer wg.Done()
		_, werr = client.Write(payload)
	}()
	wg.Wait()
	if rerr != nil || werr != nil {
		t.Fatalf("client to server: read %v, write %v", rerr, werr)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the server read other bytes than the client wrote")
	}

	wg.Add(1)
	go func() { // server to client
		defer wg.Done()
		n, err := c.Write(payload)
		if err != nil || n != len(payload) {
			werr = errors.Join(err, errors.New("short write"))
		}
	}()
	echoed, rerr = io.ReadAll(io.LimitReader(client, int64(len(payload))))
	wg.Wait()
	if rerr != nil || werr != nil {
		t.Fatalf("server to client: read %v, write %v", rerr, werr)
	}
	if !bytes.Equal(echoed, payload) {
		t.Fatal("the client read other bytes than the server wrote")
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	if n, err := c.Write(nil); n != 0 || err != nil {
		t.Errorf("Write(nil) = %d, %v; want 0, nil", n, err)
	}
}

func TestEOF(t *testing.T) {
	c, client := pair(t)
	client.Write([]byte("bye"))
	client.Close()
	got, err := io.ReadAll(c) // ReadAll stops at io.EOF and reports nil
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want \"bye\", nil", got, err)
	}
	if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestReset(t *testing.T) {
	c, client := pair(t)
	client.SetLinger(0) // close sends RST
	client.Close()
	_, err := c.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset: %v, want ECONNRESET", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after a reset: %#v, want a *net.OpError with Op read", err)
	}
}

func TestReadDeadline(t *testing.T) {
	c, client := pair(t)
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := c.Read(make([]byte, 8))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v is not a net.Error timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read past its deadline: %#v, want Op read (not raw-read)", err)
	}
	// With the deadline cleared, the next Read reads again (with it still
	// past, Read fails before it looks at the socket).
	c.SetReadDeadline(time.Time{})
	client.Write([]byte("late"))
	buf := make([]byte, 8)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("Read after the deadline was cleared = %q, %v; want \"late\"", buf[:n], err)
	}
}

func TestWriteDeadline(t *testing.T) {
	c, _ := pair(t) // the client never reads: the buffers fill up
	big := make([]byte, 64<<20)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past its deadline: %d, %v; want os.ErrDeadlineExceeded", n, err)
	}
	if n >= len(big) {
		t.Fatalf("Write past its deadline wrote %d bytes; want fewer than %d", n, len(big))
	}
}

func TestCloseEndsBlockedRead(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait in the poller; a Read that had not started fails the same way
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read ended by Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
}

// TestConcurrentWritesStayWhole: like a net.Conn, concurrent Writes do not
// interleave their bytes.
func TestConcurrentWritesStayWhole(t *testing.T) {
	c, client := pair(t)
	const writers, records, size = 8, 200, 3000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range records {
				if _, err := c.Write(rec); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	buf := make([]byte, size)
	for i := range writers * records {
		if _, err := io.ReadFull(client, buf); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if bytes.Count(buf, buf[:1]) != size {
			t.Fatalf("record %d mixes the bytes of two writes", i)
		}
	}
	wg.Wait()
}

// TestListenerPassesOtherConns: a connection that is not TCP is returned
// as accepted.
func TestListenerPassesOtherConns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("unix", path); err == nil {
			defer c.Close()
			c.Write([]byte("x"))
		}
	}()
	c, err := Listener(ln).Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*net.UnixConn); !ok {
		t.Fatalf("Accept on a unix listener returned %T, want *net.UnixConn", c)
	}
}

// TestNoAllocations: a Read and a Write that need no wait allocate
// nothing, so a tier hit stays allocation-free through the listener.
func TestNoAllocations(t *testing.T) {
	c, client := pair(t)
	msg := []byte("GET /api/users/1 HTTP/1.1\r\n\r\n")
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a Read and a Write through rawio allocate %.1f times, want 0", allocs)
	}
}
