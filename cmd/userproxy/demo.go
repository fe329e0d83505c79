package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/userproxy/userproxy/upstream/fakeupstream"
)

// demoLatency makes the fake upstream about as slow as a real API across the
// internet, so the difference between a miss and a hit is visible.
const demoLatency = 20 * time.Millisecond

// startDemoUpstream starts the embedded fake upstream on a loopback port and
// points cfg at it. Unless told otherwise the demo listens on loopback only:
// it serves made-up data with published credentials.
func startDemoUpstream(cfg *Config, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting demo upstream: %w", err)
	}
	srv := &http.Server{
		Handler:           fakeupstream.NewHandler(fakeupstream.Options{Latency: demoLatency}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	cfg.UpstreamURL = "http://" + ln.Addr().String()
	if strings.HasPrefix(cfg.Listen, ":") {
		cfg.Listen = "127.0.0.1" + cfg.Listen
	}
	if strings.HasPrefix(cfg.AdminListen, ":") {
		cfg.AdminListen = "127.0.0.1" + cfg.AdminListen
	}
	log.Info("demo mode: embedded fake upstream started", "url", cfg.UpstreamURL, "latency", demoLatency.String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

func printDemo(w io.Writer, proxyAddr, adminAddr net.Addr, upstreamURL string) {
	creds := fakeupstream.DemoCredentials()
	fmt.Fprintf(w, "\nuserproxy demo\n  proxy:    http://%s\n  admin:    http://%s/metrics  /healthz  /readyz\n  upstream: %s (fake, %s latency, users 1..50)\n\n",
		proxyAddr, adminAddr, upstreamURL, demoLatency)
	fmt.Fprintf(w, "Try it (run twice: a miss, then a hit; watch Cache-Status):\n  curl -i -u %s:%s http://%s/api/users/1\n",
		creds[0].Username, creds[0].Password, proxyAddr)
	if len(creds) > 1 {
		fmt.Fprintf(w, "Another tenant's credentials see their own data:\n  curl -i -u %s:%s http://%s/api/users/1\n",
			creds[1].Username, creds[1].Password, proxyAddr)
	}
	fmt.Fprintln(w)
}
