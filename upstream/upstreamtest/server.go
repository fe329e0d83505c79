package upstreamtest

import (
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Server is a fakeupstream Handler on an httptest server bound to 127.0.0.1.
type Server struct {
	*Handler
	// URL is the base URL, "http://127.0.0.1:PORT", with no trailing slash.
	URL string

	srv       *httptest.Server
	closeOnce sync.Once
}

// NewServer starts a Server with a NewHandler(opts) and registers Close with
// t.Cleanup. It fails t if it cannot listen on 127.0.0.1.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	h := NewHandler(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("upstreamtest: listening on 127.0.0.1: %v", err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close() // the default may fall back to [::1]; we want 127.0.0.1
	srv.Listener = l
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	srv.Start()
	s := &Server{Handler: h, URL: srv.URL, srv: srv}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, first releasing requests held by FaultHang,
// latency or FaultSlowBody and closing client connections, so it never
// waits on them. Later requests fail to connect, which tests can use to
// simulate an upstream that is down. Safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.Handler.Close()
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}
