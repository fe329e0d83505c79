// Command userproxy is a caching read-through proxy for the CommPeak Dialer
// "Get user" API. See the README for flags and behaviour.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/procs"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/upstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, nil))
}

// run is main with its dependencies passed in, so tests can drive it. It
// returns the exit status: 0 after a clean shutdown, 1 on a runtime failure,
// 2 on invalid configuration. ready, if non-nil, receives the bound proxy and
// admin addresses once both listen.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer, ready chan<- [2]string) int {
	cfg, fs, err := parseConfig(args, lookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage: userproxy [flags]\n\nEvery flag has an environment twin USERPROXY_<FLAG_IN_UPPER_SNAKE> (the flag wins);\n-key-secret and -upstream-password can also be read from files (-key-secret-file, USERPROXY_KEY_SECRET_FILE, ...).\n\n")
		fs.PrintDefaults()
		return 0
	}
	if err == nil && cfg.Version {
		printVersion(stdout, currentBuild())
		return 0
	}
	if err == nil {
		err = cfg.Validate()
	}
	var sealer *cache.Sealer
	if err == nil {
		sealer, err = cfg.sealer()
	}
	if err != nil {
		fmt.Fprintf(stderr, "userproxy: invalid configuration: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	defer applyMemoryLimit(cfg, lookupEnv, log)()
	defer applyGCPercent(cfg, lookupEnv, log)()
	defer applyMaxProcs(ctx, cfg, lookupEnv, log, procs.Options{})()
	if err := serve(ctx, cfg, sealer, log, stdout, ready); err != nil {
		log.Error("userproxy stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel)) // validated
	opts := &slog.HandlerOptions{Level: level}
	if logFormat(cfg.LogFormat, w) == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve wires the components and serves until ctx is done, then drains.
func serve(ctx context.Context, cfg Config, sealer *cache.Sealer, log *slog.Logger, stdout io.Writer, ready chan<- [2]string) error {
	if cfg.Demo {
		stopDemo, err := startDemoUpstream(&cfg, log)
		if err != nil {
			return err
		}
		defer stopDemo()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	metrics.NewBuildInfo(reg, currentBuild())

	secret := []byte(cfg.KeySecret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret)
	}

	var store proxy.Store
	var ping func(context.Context) error
	if cfg.RedisURL != "" {
		client, err := cache.NewUniversalClient(cfg.RedisURL, cache.ClientOptions{Timeout: cfg.RedisTimeout, PoolSize: cfg.RedisPoolSize})
		if err != nil {
			return fmt.Errorf("-redis-url: %w", err)
		}
		defer client.Close()
		cacheGauge := m.BreakerState.WithLabelValues("cache")
		r := cache.NewRedis(client, cache.RedisOptions{Sealer: sealer, AutoPipeline: cfg.RedisAutoPipe, Breaker: cache.BreakerOptions{
			OnStateChange: func(from, to cache.BreakerState) {
				cacheGauge.Set(float64(to))
				log.Warn("cache circuit breaker changed state; failing open to the upstream while not closed",
					"from", from.String(), "to", to.String())
			},
		}})
		reg.MustRegister(metrics.NewPoolCollector(func() metrics.PoolStats { return poolStats(r.PoolStats()) }))
		store, ping = r, r.Ping
		if cfg.L1TTL > 0 {
			tier, err := cache.NewTiered(r, cache.L1Options{MaxBytes: cfg.L1MaxBytes, TTL: cfg.L1TTL})
			if err != nil {
				return err
			}
			reg.MustRegister(metrics.NewL1Collector(func() metrics.L1Stats { return l1Stats(tier.Stats()) }))
			store = tier
			// The subscription lives as long as the process serves; it
			// stops after the servers have drained (see below). The tier
			// answers only while it runs: its heartbeats are the lease.
			subCtx, stopSub := context.WithCancel(context.WithoutCancel(ctx))
			subDone := make(chan struct{})
			go func() {
				defer close(subDone)
				if err := tier.Run(subCtx); err != nil {
					log.Error("invalidation subscription ended; the in-process tier no longer answers, every lookup goes to Redis", "err", err)
				}
			}()
			defer func() { stopSub(); <-subDone }()
		}
	} else {
		log.Warn("no -redis-url: using the embedded in-process store; it is not shared between replicas", "max_bytes", cfg.MemoryMaxBytes)
		store = cache.NewMemory(cache.MemoryOptions{MaxBytes: cfg.MemoryMaxBytes})
	}

	var inject *upstream.Credentials
	if cfg.AuthMode == "inject" {
		inject = &upstream.Credentials{Username: cfg.UpstreamUsername, Password: cfg.UpstreamPassword}
	}
	breakerGauge := m.BreakerState.WithLabelValues("upstream")
	up, err := upstream.New(upstream.Options{
		BaseURL:      cfg.UpstreamURL,
		Inject:       inject,
		Timeout:      cfg.UpstreamTimeout,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Breaker: upstream.BreakerOptions{
			ConsecutiveFailures: uint32(cfg.BreakerFailures),
			Interval:            cfg.BreakerInterval,
			OpenTimeout:         cfg.BreakerOpenTimeout,
			HalfOpenRequests:    uint32(cfg.BreakerHalfOpen),
		},
		Observe: func(status int, _ error, elapsed time.Duration) {
			m.UpstreamRequests.WithLabelValues(metrics.Code(status)).Inc()
			m.UpstreamDuration.Observe(elapsed.Seconds())
		},
		OnStateChange: func(from, to upstream.BreakerState) {
			breakerGauge.Set(float64(to))
			log.Warn("upstream circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	if err != nil {
		return fmt.Errorf("-upstream-url: %w", err)
	}

	var validID func(string) bool
	if cfg.IDPattern != defaultIDPattern {
		re, _ := compileIDPattern(cfg.IDPattern) // validated
		validID = re.MatchString
	}
	var passURL *url.URL
	if cfg.Passthrough {
		passURL, _ = url.Parse(cfg.UpstreamURL) // validated
	}
	h, err := proxy.New(proxy.Options{
		Store:                    store,
		Upstream:                 up,
		KeySecret:                secret,
		Inject:                   inject,
		TTL:                      cfg.CacheTTL,
		NegativeTTL:              cfg.NegativeTTL,
		StaleWhileRevalidate:     cfg.SWR,
		StaleIfError:             cfg.StaleTTL,
		TTLJitter:                cfg.TTLJitter,
		EarlyRefreshBeta:         cfg.EarlyBeta,
		IgnoreClientCacheControl: !cfg.HonorClientCC,
		RedactFields:             cfg.redactFields(),
		CacheTimeout:             cfg.RedisTimeout,
		FillTimeout:              cfg.UpstreamTimeout + 2*cfg.RedisTimeout + time.Second,
		ValidID:                  validID,
		PassthroughURL:           passURL,
		Metrics:                  m,
		Logger:                   log,
	})
	if err != nil {
		return err
	}
	admin := proxy.NewAdmin(proxy.AdminOptions{
		Gatherer: reg,
		Ping:     ping,
		Breaker:  func() string { return up.State().String() },
		Purge:    h.Purge(cfg.AdminToken),
	})

	proxyLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		proxyLn.Close()
		return fmt.Errorf("-admin-listen: %w", err)
	}
	proxySrv := proxy.NewFrontServer(h.Front(proxy.FrontOptions{
		AccessLog: proxy.AccessLogOptions{Logger: log, SampleRate: cfg.AccessLogSampleRate},
	}), cfg.UpstreamTimeout+5*time.Second, log)
	adminSrv := newServer(wrapAdmin(admin, cfg), 30*time.Second, log)

	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(proxyLn) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	log.Info("userproxy listening", "listen", proxyLn.Addr().String(), "admin", adminLn.Addr().String(),
		"upstream", cfg.UpstreamURL, "auth_mode", cfg.AuthMode, "redis", cfg.RedisURL != "")
	if cfg.Demo {
		printDemo(stdout, proxyLn.Addr(), adminLn.Addr(), cfg.UpstreamURL)
	}
	if ready != nil {
		ready <- [2]string{proxyLn.Addr().String(), adminLn.Addr().String()}
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	// Drain: stop advertising readiness, let in-flight requests finish
	// within the bound, then close the admin listener last so probes and
	// the final scrape still work while draining.
	admin.SetDraining()
	log.Info("shutting down", "drain_timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := proxySrv.ShutdownWithContext(sctx); err != nil {
		log.Warn("in-flight requests did not finish within -shutdown-timeout", "err", err)
		proxySrv.CloseAll()
	}
	h.Close() // background refreshes
	adminSrv.Shutdown(sctx)
	up.CloseIdleConnections()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// newServer returns a server with a timeout on every phase, so slow or
// hostile clients cannot hold connections open.
func newServer(h http.Handler, writeTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       120 * time.Second,
		// User lookups carry small headers, and Basic credentials over 1 KiB
		// get the proxy's own JSON 401; past this Go answers 431 itself.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// memoryLimit is the soft heap limit -memory-limit asks for: with 0, twice
// the bytes the in-process cache may hold plus 32 MiB for everything else
// (connection buffers, pools, the runtime), and never under 64 MiB, since
// the heap grows to about twice its live size between collections by
// default (GOGC=100; with an in-process cache the proxy lowers it, see
// gcPercent, and the hot load stays under this limit). Measured under the
// hot benchmark with the 16 MiB tier and GOGC=100: RSS 76-78 MiB without a
// limit, 72 MiB with this one. The floor matters: a limit near the live
// heap makes the runtime collect continuously; a 24 MiB limit on a
// Redis-only replica with 128 connections starved it into cache timeouts
// (bench/RESULTS.md).
// 0 is returned for no limit.
func memoryLimit(cfg Config) int64 {
	switch {
	case cfg.MemoryLimit < 0:
		return 0
	case cfg.MemoryLimit > 0:
		return cfg.MemoryLimit
	}
	return max(2*inProcessBytes(cfg)+32<<20, 64<<20)
}

// inProcessBytes is the bound of the in-process cache in use: the embedded
// store without Redis, the tier with it, or 0.
func inProcessBytes(cfg Config) int64 {
	switch {
	case cfg.RedisURL == "":
		return cfg.MemoryMaxBytes
	case cfg.L1TTL > 0:
		return cfg.L1MaxBytes
	}
	return 0
}

// gcPercent is the GOGC value -gc-percent asks for: with 0, 35 when an
// in-process cache is on, else the Go default, 100. With a cache, the live
// heap is mostly that long-lived cache, which GOGC=100 lets the heap
// outgrow by as much again before collecting. Measured under the hot
// benchmark with the 16 MiB tier and GOMAXPROCS 2: RSS 72 MiB at 100 (held
// by the 64 MiB limit), 60-61 MiB at 50, 66 MiB at 75, at the same
// throughput (10-12 collections in 10 s instead of 5-7). With the 8
// scheduler threads of maxProcs the heap runs further ahead of each
// collection: 64-66 MiB at 50, 59-62 MiB at 35, again at the same
// throughput. Reaching 60 MiB with the soft limit instead (48 MiB) made the
// runtime collect back to back after a burst of new connections: the
// cache's fragmented spans count against the limit, so the heap goal fell
// to the live heap (a 200-request stampede took 39 ms instead of 25).
func gcPercent(cfg Config) int {
	switch {
	case cfg.GCPercent > 0:
		return cfg.GCPercent
	case inProcessBytes(cfg) > 0:
		return 35
	}
	return 100
}

// maxProcs is the GOMAXPROCS range -gomaxprocs asks for, given the CPUs
// this process may run on and the runtime's own choice, which follows a
// cgroup CPU limit. An explicit count is used as is (low = high). With 0 and
// no limit below the CPUs, one thread per CPU while the CPUs have room and
// four per CPU, at most 32 (never fewer than the CPUs), while they are
// saturated (package internal/procs moves between the two); under a limit,
// 0, 0: the runtime's choice stands.
//
// A sidecar shares its CPUs with the application beside it. While they are
// saturated, a scheduler thread the kernel preempts for another process
// holds every goroutine queued on it (requests whose data has arrived)
// until it runs again; more threads than CPUs let the kernel interleave the
// proxy's work with the neighbour's in smaller pieces. Measured under the
// hot benchmark on 2 CPUs, where wrk is the neighbour: with the tier,
// 27-32k req/s and p99 11.5-13.6 ms at 2 threads, 33-44k and 6.6-7.9 ms at
// 8 (16: no better; 4 and 6: in between); Redis only, 21.5-26.9k and p99
// 7.3-9.1 ms at 2, 26.5-30.4k and 6.1-7.0 ms at 8. While the CPUs have
// room (cold misses: the machine 37-70% busy) the extra threads only add
// hand-offs between threads and CPUs: 0.9-3.2 ms more p50 at 8 than at 2
// (bench/RESULTS.md). Under a CPU quota the extra threads would spend it in
// bursts and get the container throttled for the rest of each period, so
// the runtime's choice stands there.
func maxProcs(cfg Config, cpus, runtimeChoice int) (low, high int) {
	switch {
	case cfg.MaxProcs > 0:
		return cfg.MaxProcs, cfg.MaxProcs
	case runtimeChoice < cpus:
		return 0, 0
	}
	return cpus, max(cpus, min(4*cpus, 32))
}

// applyMaxProcs sets GOMAXPROCS from -gomaxprocs, unless the operator set
// GOMAXPROCS, which wins; with a range (see maxProcs) it follows the CPUs'
// load until ctx ends. It returns the function that stops that and
// restores the previous value. Once set, the runtime no longer follows
// changes to the container's CPU limit while the process runs (Go 1.25's
// automatic update); a limit set at start is still honoured.
func applyMaxProcs(ctx context.Context, cfg Config, lookupEnv func(string) (string, bool), log *slog.Logger, opts procs.Options) (restore func()) {
	if v, ok := lookupEnv("GOMAXPROCS"); ok && v != "" {
		log.Info("GOMAXPROCS is set: -gomaxprocs ignored", "gomaxprocs", v)
		return func() {}
	}
	low, high := maxProcs(cfg, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	switch {
	case high == 0:
		log.Info("GOMAXPROCS left to the runtime: a CPU limit applies", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU())
		return func() {}
	case low == high:
		prev := runtime.GOMAXPROCS(high)
		log.Info("GOMAXPROCS set", "gomaxprocs", high, "cpus", runtime.NumCPU())
		return func() { runtime.GOMAXPROCS(prev) }
	}
	// Low from the start, not once the goroutine below runs: what is sized
	// from GOMAXPROCS while the proxy is wired (go-redis's default pool, 10
	// connections per thread) must not depend on that race.
	prev := runtime.GOMAXPROCS(low)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	opts.Low, opts.High = low, high
	opts.OnChange = func(from, to int, busy float64) {
		log.Info("GOMAXPROCS changed with the CPUs' load", "from", from, "to", to, "cpu_busy", fmt.Sprintf("%.2f", busy))
	}
	go func() {
		defer close(done)
		log.Info("GOMAXPROCS follows the CPUs' load", "low", low, "high", high, "cpus", runtime.NumCPU())
		if err := procs.Run(ctx, opts); err != nil {
			runtime.GOMAXPROCS(high)
			log.Warn("cannot read the CPUs' load: GOMAXPROCS fixed", "gomaxprocs", high, "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
		runtime.GOMAXPROCS(prev)
	}
}

// applyGCPercent sets GOGC from -gc-percent, unless the operator set GOGC,
// which wins. It returns the function that restores the previous value.
func applyGCPercent(cfg Config, lookupEnv func(string) (string, bool), log *slog.Logger) (restore func()) {
	if v, ok := lookupEnv("GOGC"); ok && v != "" {
		log.Info("GOGC is set: -gc-percent ignored", "gogc", v)
		return func() {}
	}
	p := gcPercent(cfg)
	prev := debug.SetGCPercent(p)
	log.Info("GC percent set", "percent", p)
	return func() { debug.SetGCPercent(prev) }
}

// applyMemoryLimit sets the runtime's soft memory limit, unless the
// operator set GOMEMLIMIT (the Go runtime's own knob, which wins). It
// returns the function that restores the previous limit (run is called
// more than once in one process by the tests).
func applyMemoryLimit(cfg Config, lookupEnv func(string) (string, bool), log *slog.Logger) (restore func()) {
	if v, ok := lookupEnv("GOMEMLIMIT"); ok && v != "" {
		log.Info("GOMEMLIMIT is set: -memory-limit ignored", "gomemlimit", v)
		return func() {}
	}
	limit := memoryLimit(cfg)
	if limit <= 0 {
		return func() {}
	}
	prev := debug.SetMemoryLimit(limit)
	log.Info("soft memory limit set", "bytes", limit)
	return func() { debug.SetMemoryLimit(prev) }
}

func poolStats(s cache.PoolStats) metrics.PoolStats {
	return metrics.PoolStats{
		Hits: s.Hits, Misses: s.Misses, Timeouts: s.Timeouts,
		TotalConns: s.TotalConns, IdleConns: s.IdleConns, Stale: s.StaleConns,
	}
}

func l1Stats(s cache.L1Stats) metrics.L1Stats {
	return metrics.L1Stats{
		Hits: s.Hits, Misses: s.Misses, Evictions: s.Evictions,
		InvalidationsReceived: s.InvalidationsReceived, Subscribes: s.Subscribes,
		LeaseMisses: s.LeaseMisses, LeaseValid: s.LeaseValid,
		Bytes: s.Bytes, Entries: s.Entries,
	}
}
