// Command fakeupstream serves package fakeupstream's fake of the CommPeak
// Dialer user API, for demos, manual testing and load tests:
//
//	fakeupstream -listen 127.0.0.1:8081 -users 1000 -latency 20ms -fault none
//
// It accepts fakeupstream.DemoCredentials (printed at start), or the
// fake API users given with -credentials. For load tests with many users,
// -lazy builds each user on its first request instead of at start. Faults and
// latency can be changed while it runs through its loopback-only control
// endpoints, e.g. curl -X POST 'http://127.0.0.1:8081/_fake/fault?mode=503'
// (see the fakeupstream package doc). SIGINT or SIGTERM shut it down
// gracefully, releasing any hung requests first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/userproxy/userproxy/upstream/fakeupstream"
)

// shutdownTimeout bounds graceful shutdown; in-flight answers are small and
// hung ones are released first, so this is only a backstop.
const shutdownTimeout = 10 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on (keep it loopback: the control endpoints have no auth)")
	latency := flag.Duration("latency", 0, "delay added before answering each /api/ request")
	users := flag.Int("users", 50, "number of seeded users per tenant, ids 1..N")
	faultName := flag.String("fault", "none", "fault for GET /api/users/{id}: none, 500, 503, 429, hang, malformed, oversize, slow-body, reset")
	lazy := flag.Bool("lazy", false, "build each seeded user on its first request instead of at start (for large -users)")
	credList := flag.String("credentials", "", "comma-separated user:password:tenant fake API users to accept instead of the demo ones")
	flag.Parse()

	fault, err := fakeupstream.ParseFault(*faultName)
	if err != nil {
		log.Fatalf("fakeupstream: %v", err)
	}
	if *users <= 0 {
		log.Fatalf("fakeupstream: -users must be positive, got %d", *users)
	}
	creds, err := parseCredentials(*credList)
	if err != nil {
		log.Fatalf("fakeupstream: -credentials: %v", err)
	}
	if len(creds) == 0 {
		creds = fakeupstream.DemoCredentials()
	}
	h := fakeupstream.NewHandler(fakeupstream.Options{Users: *users, Latency: *latency, Lazy: *lazy, Credentials: creds})
	h.SetFault(fault)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("fakeupstream: listening on %s: %v", *listen, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	printBanner(os.Stdout, ln.Addr().String(), creds)
	if err := serve(ctx, ln, h); err != nil {
		log.Fatalf("fakeupstream: %v", err)
	}
}

// printBanner tells the user how to call the fake. The credentials are
// fake ones (the public demo ones, or test values given with
// -credentials), not secrets.
func printBanner(w io.Writer, addr string, creds []fakeupstream.Credential) {
	fmt.Fprintf(w, "fake CommPeak user API on http://%s\n", addr)
	for _, c := range creds {
		fmt.Fprintf(w, "  credentials %s:%s (tenant %s)\n", c.Username, c.Password, c.Tenant)
	}
	if len(creds) > 0 {
		fmt.Fprintf(w, "try: curl -u %s:%s http://%s/api/users/1\n", creds[0].Username, creds[0].Password, addr)
	}
}

// serve answers on ln with h until ctx is done, then shuts down gracefully:
// hung requests are released first so Shutdown does not wait on them.
func serve(ctx context.Context, ln net.Listener, h *fakeupstream.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	h.Close()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

// parseCredentials parses -credentials: comma-separated
// "user:password:tenant" items. The password may not contain a comma or a
// colon; none of the parts may be empty. An empty list is nil, nil.
func parseCredentials(list string) ([]fakeupstream.Credential, error) {
	if list == "" {
		return nil, nil
	}
	var creds []fakeupstream.Credential
	for i, item := range strings.Split(list, ",") {
		parts := strings.Split(item, ":")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			// Say which item, not what it held: it holds a password.
			return nil, fmt.Errorf("item %d is not user:password:tenant", i+1)
		}
		creds = append(creds, fakeupstream.Credential{Username: parts[0], Password: parts[1], Tenant: parts[2]})
	}
	return creds, nil
}
