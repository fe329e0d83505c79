package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/proxy/readthrough"
	"github.com/userproxy/userproxy/upstream"
	"github.com/userproxy/userproxy/upstream/upstreamtest"
)

// headerRecorder is a fake upstream that remembers the headers of the last
// request it received.
type headerRecorder struct {
	next http.Handler
	mu   sync.Mutex // protects last
	last http.Header
}

func (h *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.last = r.Header.Clone()
	h.mu.Unlock()
	h.next.ServeHTTP(w, r)
}

func (h *headerRecorder) lastHeader() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// newRequestIDProxy serves the proxy in front of a recording fake upstream:
// through Front, which handles request ids itself, or under net/http
// wrapped in WithRequestID, as frontUnderTest says.
func newRequestIDProxy(t *testing.T) (*testServer, *headerRecorder) {
	t.Helper()
	rec := &headerRecorder{next: upstreamtest.NewHandler(upstreamtest.Options{})}
	up := httptest.NewServer(rec)
	t.Cleanup(up.Close)
	client, err := upstream.New(upstream.Options{BaseURL: up.URL})
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	t.Cleanup(client.CloseIdleConnections)
	base, _ := url.Parse(up.URL)
	eng, err := readthrough.New(readthrough.Options{
		Store: cache.NewMemory(cache.MemoryOptions{}), Upstream: client,
		KeySecret: []byte("test-secret-0123456789"),
	})
	if err != nil {
		t.Fatalf("readthrough.New: %v", err)
	}
	t.Cleanup(eng.Close)
	h, err := proxy.New(proxy.Options{Engine: eng, PassthroughURL: base, PassthroughTransport: client.Transport()})
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	if frontUnderTest() == "fasthttp" {
		srv := serveFront(t, h.Front(proxy.FrontOptions{}))
		t.Cleanup(srv.Close)
		return srv, rec
	}
	srv := httptest.NewServer(proxy.WithRequestID(h))
	t.Cleanup(srv.Close)
	return &testServer{URL: srv.URL, Listener: srv.Listener, client: srv.Client(), close: srv.Close}, rec
}

func TestRequestIDAndTraceContextReachUpstream(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name          string
		path          string // a miss, then fresh ids per case so every request goes upstream
		in            map[string][]string
		wantID        string // "" means: a generated id
		wantParent    string
		wantState     string
		wantGenerated bool
	}{
		{name: "generated id on a cache miss", path: "/api/users/1", wantGenerated: true},
		{
			name: "client id and trace context on a cache miss", path: "/api/users/2",
			in:     map[string][]string{"X-Request-Id": {"abc-123"}, "Traceparent": {parent}, "Tracestate": {"congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"}},
			wantID: "abc-123", wantParent: parent, wantState: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
		},
		{
			name: "malformed id replaced, tracestate without parent dropped", path: "/api/users/3",
			in:            map[string][]string{"X-Request-Id": {"has space"}, "Tracestate": {"congo=t61rcWkgMzE"}},
			wantGenerated: true,
		},
		{
			name: "oversized id replaced", path: "/api/users/4",
			in:            map[string][]string{"X-Request-Id": {strings.Repeat("a", 129)}},
			wantGenerated: true,
		},
		{
			name: "pass-through request", path: "/api/other",
			in:     map[string][]string{"X-Request-Id": {"pass-1"}, "Traceparent": {parent}},
			wantID: "pass-1", wantParent: parent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, rec := newRequestIDProxy(t)
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			cred := upstreamtest.DemoCredentials()[0]
			req.SetBasicAuth(cred.Username, cred.Password)
			for k, vs := range tt.in {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("GET %s: %v", tt.path, err)
			}
			resp.Body.Close()

			echoed := resp.Header.Get(proxy.RequestIDHeader)
			if tt.wantGenerated {
				if len(echoed) != 26 || (len(tt.in["X-Request-Id"]) > 0 && echoed == tt.in["X-Request-Id"][0]) {
					t.Errorf("response X-Request-Id: got %q, want a generated 26-character id", echoed)
				}
			} else if echoed != tt.wantID {
				t.Errorf("response X-Request-Id: got %q, want %q", echoed, tt.wantID)
			}
			up := rec.lastHeader()
			if up == nil {
				t.Fatal("upstream saw no request")
			}
			if got := up.Get("X-Request-Id"); got != echoed {
				t.Errorf("upstream X-Request-Id: got %q, want the echoed %q", got, echoed)
			}
			if got := up.Get("Traceparent"); got != tt.wantParent {
				t.Errorf("upstream traceparent: got %q, want %q", got, tt.wantParent)
			}
			if got := strings.Join(up.Values("Tracestate"), ","); got != tt.wantState {
				t.Errorf("upstream tracestate: got %q, want %q", got, tt.wantState)
			}
		})
	}
}

func TestRequestIDGeneratedIDsDiffer(t *testing.T) {
	var seen []string
	h := proxy.WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, proxy.RequestIDFrom(r.Context()))
	}))
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		if got := w.Header().Get(proxy.RequestIDHeader); got != seen[len(seen)-1] {
			t.Errorf("echoed id %q differs from RequestIDFrom %q", got, seen[len(seen)-1])
		}
	}
	if seen[0] == "" || seen[0] == seen[1] {
		t.Errorf("generated ids: got %q and %q, want two different non-empty ids", seen[0], seen[1])
	}
	if got := proxy.RequestIDFrom(t.Context()); got != "" {
		t.Errorf("RequestIDFrom outside the middleware: got %q, want empty", got)
	}
}
