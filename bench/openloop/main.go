// Command openloop sends GET /api/users/{id} at a fixed rate, whether or
// not earlier requests have been answered (an open loop, like a sidecar's
// callers), and measures each latency from the time the request was due,
// so a stall shows in the figures instead of slowing the client down
// (no coordinated omission):
//
//	openloop -url http://127.0.0.1:8080 -rate 2000 -duration 10s -warmup 2s \
//	    -first 1 -ids 2000 -credentials bench1:p1,bench2:p2 \
//	    -watch proxy=1234 -watch redis=5678
//
// Ids are uniform over [-first, -first+-ids), drawn with a fixed seed;
// credentials rotate per request. The -warmup requests go at the same rate
// and are not measured. For each -watch NAME=PID[,PID...] group it reads
// the CPU time (utime + stime from /proc/PID/stat, the PIDs and their
// direct children) at the start and end of the measured window, and
// samples the resident memory every 250 ms; its own CPU and RSS are
// reported the same way, as group "client". It prints one line of
// key=value pairs for bench/run:
//
//	RESULT rate=2000 scheduled=20000 ok=20000 non200=0 errors=0 achieved_rps=1999.9
//	    p50_us=180 p99_us=900 p999_us=2100 max_us=5300 svc_p50_us=150 svc_p99_us=800
//	    blocked=0 workers=64 window_s=10.000 cpu_us_per_req_proxy=60.5 rss_kib_proxy=41000 ...
//	    cpu_us_per_req_client=55.0 rss_kib_client=20000
//
// (on one line), where cpu_us_per_req_NAME is the group's CPU time over
// the window divided by the answers received during it, and svc_* are
// latencies from the worker's send instead (what a closed-loop client
// would report). It exits non-zero only when it could not run; failed
// requests are counted.
package main

import (
	"bufio"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.URL, "url", "", "base URL, e.g. http://127.0.0.1:8080")
	flag.Float64Var(&cfg.Rate, "rate", 1000, "requests per second")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured window")
	flag.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured lead-in at the same rate")
	flag.IntVar(&cfg.First, "first", 1, "first user id")
	flag.IntVar(&cfg.IDs, "ids", 2000, "number of consecutive user ids")
	flag.StringVar(&cfg.Credentials, "credentials", "", "comma-separated user:password (fake bench credentials)")
	flag.Uint64Var(&cfg.Seed, "seed", 42, "seed of the id draws")
	flag.IntVar(&cfg.Workers, "workers", 256, "workers started up front, each with its connection opened before the schedule starts")
	flag.IntVar(&cfg.MaxWorkers, "max-workers", 1024, "workers (connections) started at most; past that a send waits (and the wait counts)")
	flag.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "per-request timeout (a timeout counts as an error)")
	flag.Int64Var(&cfg.ClkTck, "clk-tck", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK)")
	flag.Func("watch", "NAME=PID[,PID...]: report this group's CPU per request and RSS (repeatable)", func(v string) error {
		g, err := parseGroup(v)
		cfg.Watch = append(cfg.Watch, g)
		return err
	})
	flag.Parse()

	out, err := run(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "openloop: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(out)
}

// config is what one run needs; main fills it from flags.
type config struct {
	URL                 string
	Rate                float64
	Duration, Warmup    time.Duration
	First, IDs          int
	Credentials         string
	Seed                uint64
	Workers, MaxWorkers int
	Timeout             time.Duration
	ClkTck              int64
	Watch               []group
}

// samples is how many (id, credential) draws are prebuilt; request i uses
// draw i mod samples, so the send path does no arithmetic.
const samples = 1 << 16

// run does one measured run and returns the RESULT line.
func run(cfg config) (string, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.IDs <= 0 || cfg.Workers <= 0 || cfg.MaxWorkers < cfg.Workers || cfg.ClkTck <= 0 {
		return "", errors.New("-rate, -duration, -ids, -workers and -clk-tck must be positive, -warmup not negative, -max-workers at least -workers")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", errors.New("-url must be http://HOST:PORT")
	}
	auths, err := basicHeaders(cfg.Credentials)
	if err != nil {
		return "", err
	}
	paths, authOf := draws(cfg.First, cfg.IDs, len(auths), cfg.Seed)

	// Each worker keeps a connection of its own; the first -workers are
	// opened before the schedule starts. A pool that opened connections on
	// demand would open hundreds at once when the target stalls for a few
	// tens of milliseconds, and a SYN dropped from a full accept queue
	// waits 1 s for its retransmission: a stall of the client's making.
	pre := make([]*conn, cfg.Workers)
	for k := range pre {
		pre[k] = &conn{addr: u.Host, timeout: cfg.Timeout}
		if err := pre[k].dial(); err != nil {
			return "", fmt.Errorf("opening connection %d of %d: %w", k+1, cfg.Workers, err)
		}
	}
	var nextPre atomic.Int64
	newWorker := func() func(int64) (bool, error) {
		c := &conn{addr: u.Host, timeout: cfg.Timeout}
		if k := nextPre.Add(1) - 1; k < int64(len(pre)) {
			c = pre[k]
		}
		return func(i int64) (bool, error) {
			k := i % samples
			return c.get(paths[k], auths[authOf[k]])
		}
	}
	defer func() {
		for _, c := range pre {
			c.close()
		}
	}()

	w := newWatcher(append(cfg.Watch, group{name: "client", pids: []int{os.Getpid()}}))
	p := &pacer{
		sched:       schedule{start: time.Now().Add(50 * time.Millisecond), rate: cfg.Rate},
		warmup:      int64(cfg.Warmup.Seconds() * cfg.Rate),
		measured:    int64(cfg.Duration.Seconds() * cfg.Rate),
		workers:     cfg.Workers,
		maxWorkers:  cfg.MaxWorkers,
		newWorker:   newWorker,
		windowStart: w.start,
		windowEnd:   w.stop,
	}
	if p.measured == 0 {
		return "", errors.New("-duration × -rate is less than one request")
	}
	r := p.run()
	if r.FirstError != "" {
		fmt.Fprintf(os.Stderr, "openloop: first failed request: %s\n", r.FirstError)
	}
	return format(cfg, r, w), nil
}

// conn is one worker's keep-alive connection, with its request and
// response reused. A connection that failed or that the server closes is
// opened again on the next request.
type conn struct {
	addr    string
	timeout time.Duration
	c       net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	req     fasthttp.Request
	resp    fasthttp.Response
}

func (c *conn) dial() error {
	nc, err := net.DialTimeout("tcp", c.addr, c.timeout)
	if err != nil {
		return err
	}
	c.c, c.br, c.bw = nc, bufio.NewReaderSize(nc, 16<<10), bufio.NewWriterSize(nc, 4<<10)
	return nil
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// get sends GET path with the Authorization value auth and reads the whole
// answer; it reports whether it was a 200.
func (c *conn) get(path, auth string) (bool, error) {
	if c.c == nil {
		if err := c.dial(); err != nil {
			return false, err
		}
	}
	if err := c.c.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		c.close()
		return false, err
	}
	c.req.Header.SetHost(c.addr)
	c.req.SetRequestURI(path)
	c.req.Header.Set("Authorization", auth)
	err := c.req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err == nil {
		err = c.resp.Read(c.br)
	}
	if err != nil {
		c.close()
		return false, err
	}
	if c.resp.ConnectionClose() {
		c.close()
	}
	return c.resp.StatusCode() == fasthttp.StatusOK, nil
}

// draws prebuilds the request paths (ids uniform over [first, first+ids)
// from a fixed seed) and which credential each uses (rotating).
func draws(first, ids, nauth int, seed uint64) ([]string, []int) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	paths := make([]string, samples)
	authOf := make([]int, samples)
	for k := range paths {
		paths[k] = "/api/users/" + strconv.Itoa(first+r.IntN(ids))
		authOf[k] = k % nauth
	}
	return paths, authOf
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

// format renders the RESULT line.
func format(cfg config, r *result, w *watcher) string {
	us := func(d time.Duration) int64 { return d.Microseconds() }
	secs := r.Window.Seconds()
	var b strings.Builder
	fmt.Fprintf(&b, "RESULT rate=%g scheduled=%d ok=%d non200=%d errors=%d achieved_rps=%.1f", cfg.Rate,
		r.Scheduled, r.OK, r.Non200, r.Errors, float64(r.InWindow)/secs)
	fmt.Fprintf(&b, " p50_us=%d p99_us=%d p999_us=%d max_us=%d svc_p50_us=%d svc_p99_us=%d",
		us(r.Latency.Quantile(0.5)), us(r.Latency.Quantile(0.99)), us(r.Latency.Quantile(0.999)), us(r.Latency.Max()),
		us(r.Service.Quantile(0.5)), us(r.Service.Quantile(0.99)))
	fmt.Fprintf(&b, " blocked=%d workers=%d window_s=%.3f", r.Blocked, r.Workers, secs)
	for k, g := range w.groups {
		perReq := 0.0
		if r.InWindow > 0 {
			perReq = float64(w.cpu[k]) * 1e6 / float64(cfg.ClkTck) / float64(r.InWindow)
		}
		fmt.Fprintf(&b, " cpu_us_per_req_%s=%.1f rss_kib_%s=%d", g.name, perReq, g.name, w.rss[k])
	}
	return b.String()
}

// watcher measures its groups over the window: CPU ticks used, and the
// largest RSS seen by a sampler every 250 ms.
type watcher struct {
	groups []group
	cpu    []int64 // ticks: at start the reading, after stop the difference
	mu     sync.Mutex
	rss    []int64 // protected by mu until stop returns
	done   chan struct{}
	wg     sync.WaitGroup
}

func newWatcher(gs []group) *watcher {
	return &watcher{groups: gs, cpu: make([]int64, len(gs)), rss: make([]int64, len(gs)), done: make(chan struct{})}
}

func (w *watcher) sample() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, g := range w.groups {
		w.rss[k] = max(w.rss[k], g.rss())
	}
}

func (w *watcher) start() {
	for k, g := range w.groups {
		w.cpu[k] = g.cpu()
	}
	w.sample()
	w.wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
				w.sample()
			}
		}
	})
}

func (w *watcher) stop() {
	for k, g := range w.groups {
		w.cpu[k] = g.cpu() - w.cpu[k]
	}
	close(w.done)
	w.wg.Wait()
	w.sample()
}
