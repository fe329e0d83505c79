package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/userproxy/userproxy/proxy"
)

// testServer serves a proxy.Handler on a loopback port the way the binary
// does: Handler.Front on proxy.NewFrontServer. With USERPROXY_TEST_FRONT=nethttp
// it serves Handler.ServeHTTP (the net/http API of the package) on an
// httptest server instead, so the whole suite can run against either front.
type testServer struct {
	URL      string
	Listener net.Listener
	client   *http.Client
	close    func()
}

func (s *testServer) Client() *http.Client { return s.client }
func (s *testServer) Close()               { s.close() }

// frontUnderTest names the front the suite runs against.
func frontUnderTest() string {
	if os.Getenv("USERPROXY_TEST_FRONT") == "nethttp" {
		return "nethttp"
	}
	return "fasthttp"
}

func newTestServer(t *testing.T, h *proxy.Handler) *testServer {
	t.Helper()
	if frontUnderTest() == "nethttp" {
		srv := httptest.NewServer(h)
		return &testServer{URL: srv.URL, Listener: srv.Listener, client: srv.Client(), close: srv.Close}
	}
	return serveFront(t, h.Front(proxy.FrontOptions{}))
}

// serveFront serves handler h with the binary's server settings.
func serveFront(t *testing.T, h fasthttp.RequestHandler) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	srv := proxy.NewFrontServer(h, 10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	return &testServer{
		URL:      "http://" + ln.Addr().String(),
		Listener: ln,
		client:   &http.Client{Transport: tr},
		close: func() {
			tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.ShutdownWithContext(ctx); err != nil {
				srv.CloseAll()
			}
			<-done
		},
	}
}
