// Command warm fills a cache before a hot-hit benchmark: it GETs
// /api/users/{id} once for every id in [-first, -first+-ids) and every
// credential, with -c requests in flight, and exits when all are answered:
//
//	warm -url http://127.0.0.1:8080 -first 1 -ids 10000 \
//	    -credentials bench1:p1,bench2:p2 -c 128
//
// (wrk cannot stop after a fixed number of requests.) It prints one line,
// "warmed N requests in 1.2s", and exits non-zero unless every answer was
// a 200.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.URL, "url", "", "base URL, e.g. http://127.0.0.1:8080")
	flag.IntVar(&cfg.First, "first", 1, "first user id")
	flag.IntVar(&cfg.IDs, "ids", 10000, "number of consecutive user ids")
	flag.StringVar(&cfg.Credentials, "credentials", "", "comma-separated user:password (fake bench credentials)")
	flag.IntVar(&cfg.Concurrency, "c", 128, "requests in flight")
	timeout := flag.Duration("timeout", 2*time.Minute, "bound on the whole run")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	n, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "warm: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("warmed %d requests in %s\n", n, time.Since(start).Round(time.Millisecond))
}

// config is what one run needs; main fills it from flags.
type config struct {
	URL         string
	First, IDs  int
	Credentials string
	Concurrency int
}

// run sends every request once and returns how many were answered 200; it
// stops at the first failure.
func run(ctx context.Context, cfg config) (int64, error) {
	if cfg.IDs <= 0 || cfg.Concurrency <= 0 {
		return 0, fmt.Errorf("-ids and -c must be positive, got %d and %d", cfg.IDs, cfg.Concurrency)
	}
	auths, err := basicHeaders(cfg.Credentials)
	if err != nil {
		return 0, err
	}
	base := strings.TrimSuffix(cfg.URL, "/")
	if !strings.HasPrefix(base, "http://") {
		return 0, errors.New("-url must start with http://")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, ResponseHeaderTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	total := cfg.IDs * len(auths)
	var next, ok atomic.Int64
	var wg sync.WaitGroup
	for range min(cfg.Concurrency, total) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				id := strconv.Itoa(cfg.First + i/len(auths))
				if err := get(ctx, client, base+"/api/users/"+id, auths[i%len(auths)]); err != nil {
					cancel(fmt.Errorf("user %s: %w", id, err))
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return ok.Load(), err
	}
	return ok.Load(), nil
}

// basicHeaders turns "u1:p1,u2:p2" into Authorization header values.
func basicHeaders(list string) ([]string, error) {
	var out []string
	for i, c := range strings.Split(list, ",") {
		if !strings.Contains(c, ":") {
			// Say which item, not what it held: it holds a password.
			return nil, fmt.Errorf("-credentials item %d is not user:password", i+1)
		}
		out = append(out, "Basic "+base64.StdEncoding.EncodeToString([]byte(c)))
	}
	return out, nil
}

// get fetches url with the Authorization value auth and wants a 200.
func get(ctx context.Context, c *http.Client, url, auth string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Authorization", auth)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("fetching: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("got status %d, want 200", resp.StatusCode)
	}
	return nil
}
