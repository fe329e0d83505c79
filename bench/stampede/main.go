// Command stampede releases many simultaneous requests for one cold key and
// reports how many reached the upstream and how long callers waited:
//
//	stampede -url http://127.0.0.1:8080/api/users/200001 -id 200001 \
//	    -credentials bench1:bench1-password \
//	    -stats http://127.0.0.1:8081/_fake/stats -n 200
//
// It first opens -n TCP connections (so connection setup is not measured),
// then writes one GET on every connection at once and reads the answers.
// The upstream calls are read from the fake upstream's GET /_fake/stats
// (per_id of -id, after minus before). It prints one line of key=value
// pairs, for bench/run:
//
//	upstream_calls=1 ok=200 errors=0 p50_ms=21.03 p99_ms=22.87 max_ms=23.01
//
// and exits non-zero when it could not measure (no connection, no stats).
// Failed requests are counted in errors, not fatal: a proxy that answers
// 503 under a stampede is a result.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.URL, "url", "", "URL every request asks for (http only)")
	flag.StringVar(&cfg.ID, "id", "", "user id in -url, as the fake upstream counts it")
	flag.StringVar(&cfg.Credentials, "credentials", "", "user:password sent as HTTP Basic (fake bench credentials)")
	flag.StringVar(&cfg.StatsURL, "stats", "", "the fake upstream's /_fake/stats URL")
	flag.IntVar(&cfg.N, "n", 200, "simultaneous requests, one per pre-opened connection")
	flag.DurationVar(&cfg.Timeout, "timeout", 15*time.Second, "bound on the whole run")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stampede: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(res)
}

// config is what one run needs; main fills it from flags.
type config struct {
	URL         string
	ID          string
	Credentials string
	StatsURL    string
	N           int
	Timeout     time.Duration
}

// result is what one run measured.
type result struct {
	UpstreamCalls int64
	OK            int             // 200 answers
	Errors        int             // other statuses and transport errors
	Latencies     []time.Duration // of every request, answered or not, sorted
	FirstError    string          // the first failure, to help read a bad run
}

// String formats r as the key=value line bench/run parses.
func (r result) String() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	s := fmt.Sprintf("upstream_calls=%d ok=%d errors=%d p50_ms=%s p99_ms=%s max_ms=%s",
		r.UpstreamCalls, r.OK, r.Errors,
		ms(percentile(r.Latencies, 50)), ms(percentile(r.Latencies, 99)), ms(percentile(r.Latencies, 100)))
	if r.FirstError != "" {
		s += fmt.Sprintf(" first_error=%q", r.FirstError)
	}
	return s
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted; 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest rank: the smallest value with at least p% of values <= it.
	rank := int(float64(len(sorted))*p/100 + 0.9999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// run measures one stampede as the package doc says.
func run(ctx context.Context, cfg config) (result, error) {
	if cfg.N <= 0 {
		return result{}, fmt.Errorf("-n must be positive, got %d", cfg.N)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return result{}, errors.New("-url must be an http:// URL with a host")
	}
	raw, err := rawRequest(u, cfg.Credentials)
	if err != nil {
		return result{}, err
	}
	stats := &http.Client{Timeout: 10 * time.Second}
	before, err := upstreamCalls(ctx, stats, cfg.StatsURL, cfg.ID)
	if err != nil {
		return result{}, err
	}
	conns, err := dialAll(ctx, u.Host, cfg.N)
	if err != nil {
		return result{}, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// The run's deadline also bounds every read and write.
	if dl, ok := ctx.Deadline(); ok {
		for _, c := range conns {
			_ = c.SetDeadline(dl) // a conn that refuses deadlines fails its request: counted
		}
	}

	type answer struct {
		latency time.Duration
		err     error
	}
	answers := make([]answer, len(conns))
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	for i, c := range conns {
		ready.Add(1)
		done.Go(func() {
			ready.Done()
			<-start
			t0 := time.Now()
			err := roundTrip(c, raw)
			answers[i] = answer{time.Since(t0), err}
		})
	}
	ready.Wait() // every goroutine is parked on start: release them together
	close(start)
	done.Wait()

	after, err := upstreamCalls(ctx, stats, cfg.StatsURL, cfg.ID)
	if err != nil {
		return result{}, err
	}
	res := result{UpstreamCalls: after - before}
	for _, a := range answers {
		res.Latencies = append(res.Latencies, a.latency)
		if a.err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = a.err.Error()
			}
			continue
		}
		res.OK++
	}
	slices.Sort(res.Latencies)
	return res, nil
}

// rawRequest returns the bytes of one keep-alive GET of u with Basic
// credentials "user:password" (none when empty).
func rawRequest(u *url.URL, credentials string) ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: userproxy-bench-stampede\r\n", u.RequestURI(), u.Host)
	if credentials != "" {
		if !strings.Contains(credentials, ":") {
			return nil, errors.New("-credentials must be user:password")
		}
		fmt.Fprintf(&b, "Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(credentials)))
	}
	b.WriteString("\r\n")
	return []byte(b.String()), nil
}

// dialAll opens n TCP connections to hostport, or none if one fails.
func dialAll(ctx context.Context, hostport string, n int) ([]net.Conn, error) {
	var d net.Dialer
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("opening connection %d of %d: %w", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// roundTrip writes raw on c and reads one full response; anything but a
// 200 is an error.
func roundTrip(c net.Conn, raw []byte) error {
	if _, err := c.Write(raw); err != nil {
		return fmt.Errorf("writing request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("got status %d", resp.StatusCode)
	}
	return nil
}

// upstreamCalls reads how many GETs of id the fake upstream has counted.
func upstreamCalls(ctx context.Context, c *http.Client, statsURL, id string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, statsURL, nil)
	if err != nil {
		return 0, fmt.Errorf("building stats request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading upstream stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("reading upstream stats: got status %d", resp.StatusCode)
	}
	var s struct {
		PerID map[string]int64 `json:"per_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return 0, fmt.Errorf("decoding upstream stats: %w", err)
	}
	if s.PerID == nil {
		return 0, errors.New("decoding upstream stats: no per_id")
	}
	return s.PerID[id], nil
}
