package proxy_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/userproxy/userproxy/internal/testkit"
)

// TestClientGoneWhileWaitingOnAFill: a request waiting on another's fill
// stops waiting when its client hangs up, and is counted as a 499, on both
// fronts; the fill goes on and answers the request that leads it.
func TestClientGoneWhileWaitingOnAFill(t *testing.T) {
	hold := &holdFirstGet{id: "21", fetched: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, storeKinds[0].new(t, nil), envOptions{wrapUpstream: func(next http.Handler) http.Handler { hold.next = next; return hold }})
	arrived := countArrivals(t, e)
	released := false
	release := func() {
		if !released {
			released = true
			close(hold.release)
		}
	}
	t.Cleanup(release) // a failed wait must not leave the fill held

	first := make(chan response, 1)
	go func() { first <- e.get("21", alice) }()
	<-hold.fetched // the fill is at the upstream, held

	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(alice.Username + ":" + alice.Password))
	fmt.Fprintf(conn, "GET /api/users/21 HTTP/1.1\r\nHost: proxy\r\nAuthorization: Basic %s\r\n\r\n", auth)
	testkit.Await(t, "the second request to be served", func() bool { return arrived.Load() == 2 })
	conn.Close() // the client leaves while the fill is held

	testkit.Await(t, "the waiting request to be counted as a 499", func() bool { return e.requests("miss", "499") == 1 })
	release()
	e.want(<-first, http.StatusOK, "userproxy; fwd=uri-miss; fwd-status=200; stored")
	if got := e.up.RequestsFor("21"); got != 1 {
		t.Errorf("upstream calls: got %d, want 1", got)
	}
}
