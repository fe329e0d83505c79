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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/userproxy/userproxy/cache"
	"github.com/userproxy/userproxy/internal/rawio"
	"github.com/userproxy/userproxy/internal/runtimetune"
	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy"
	"github.com/userproxy/userproxy/proxy/readthrough"
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
		fmt.Fprint(stdout, helpHeader())
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
	// go-redis has one logger per process, so it is set here, by the
	// program, not by package cache: its lines then join this log as
	// records instead of plain text.
	cache.SetRedisLogger(log)
	defer runtimetune.Apply(runtimetune.Options{
		MemoryLimit:    cfg.MemoryLimit,
		GCPercent:      cfg.GCPercent,
		MaxProcs:       cfg.MaxProcs,
		InProcessBytes: cfg.inProcessBytes(),
		LookupEnv:      lookupEnv,
		Logger:         log,
	})()
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

	var store readthrough.Store
	var leases readthrough.Leases // nil: fills shared per replica only
	var ping func(context.Context) error
	var fleet upstream.FleetBreaker // nil: no fleet hint
	if cfg.RedisURL != "" {
		client, err := cache.NewUniversalClient(cfg.RedisURL, cache.ClientOptions{Timeout: cfg.RedisTimeout, PoolSize: cfg.RedisPoolSize,
			OnTopologyReload: func(reason string) { m.TopologyReloads.WithLabelValues(reason).Inc() }})
		if err != nil {
			return fmt.Errorf("-redis-url: %w", err)
		}
		defer client.Close()
		cacheGauge := m.BreakerState.WithLabelValues("cache")
		onCorrupt := func(err error) { // the error names the user id, never the entry or scope
			m.CacheErrors.WithLabelValues(metrics.OpDecode).Inc()
			log.Warn("cache entry cannot be decrypted or decoded; treated as a miss", "err", err)
		}
		r := cache.NewRedis(client, cache.RedisOptions{Sealer: sealer, AutoPipeline: cfg.RedisAutoPipe, OnCorrupt: onCorrupt, Breaker: cache.BreakerOptions{
			OnStateChange: func(from, to cache.BreakerState) {
				cacheGauge.Set(float64(to))
				log.Warn("cache circuit breaker changed state; failing open to the upstream while not closed",
					"from", from.String(), "to", to.String())
			},
		}})
		reg.MustRegister(metrics.NewPoolCollector(func() metrics.PoolStats { return poolStats(r.PoolStats()) }))
		store, ping = r, r.Ping
		if cfg.BreakerFleetQuorum > 0 {
			fleet = cache.NewFleetBreaker(r, cache.FleetOptions{Timeout: cfg.RedisTimeout})
		}
		warnIfRedisDown(ctx, ping, cfg.RedisURL, log)
		if cfg.FillLease {
			fl := cache.NewFillLeases(r)
			leases = fl
			// Announcements wake the replicas waiting on another's fill;
			// without them, waiters poll.
			stop := runBackground(ctx, log, "fill announcement subscription ended; waiters on other replicas' fills poll instead", fl.Run)
			defer stop()
		}
		if cfg.L1TTL > 0 {
			tier, err := cache.NewTiered(r, cache.L1Options{MaxBytes: cfg.L1MaxBytes, TTL: cfg.L1TTL})
			if err != nil {
				return err
			}
			reg.MustRegister(metrics.NewL1Collector(func() metrics.L1Stats { return l1Stats(tier.Stats()) }))
			store = tier
			// The tier answers only while its subscription runs: its
			// heartbeats are the lease.
			stop := runBackground(ctx, log, "invalidation subscription ended; the in-process tier no longer answers, every lookup goes to Redis", tier.Run)
			defer stop()
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
	var onFleetChange func(reports int, state upstream.BreakerState)
	if fleet != nil {
		fleetGauge := m.BreakerState.WithLabelValues("fleet")
		fleetGauge.Set(metrics.BreakerClosed)
		inForce := false // calls are serialised by the hint
		onFleetChange = func(reports int, state upstream.BreakerState) {
			m.FleetBreakerReports.Set(float64(reports))
			fleetGauge.Set(float64(state))
			if now := state == upstream.BreakerOpen; now != inForce {
				inForce = now
				log.Warn("fleet breaker hint changed: while in force, calls fail fast unless this replica probes for the fleet",
					"in_force", now, "reports", reports, "quorum", cfg.BreakerFleetQuorum)
			}
		}
	}
	up, err := upstream.New(upstream.Options{
		BaseURL:      cfg.UpstreamURL,
		Inject:       inject,
		Timeout:      cfg.UpstreamTimeout,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Breaker: upstream.BreakerOptions{
			ConsecutiveFailures: uint32(cfg.BreakerFailures),
			Interval:            breakerInterval(cfg.BreakerInterval),
			OpenTimeout:         cfg.BreakerOpenTimeout,
			HalfOpenRequests:    uint32(cfg.BreakerHalfOpen),
		},
		Fleet:         fleet,
		FleetQuorum:   cfg.BreakerFleetQuorum,
		OnFleetChange: onFleetChange,
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
	if fleet != nil {
		// Like the invalidation subscription: stops after the servers
		// have drained.
		fleetCtx, stopFleet := context.WithCancel(context.WithoutCancel(ctx))
		fleetDone := make(chan struct{})
		go func() { defer close(fleetDone); up.RunFleet(fleetCtx) }()
		defer func() { stopFleet(); <-fleetDone }()
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
	// A lease holder's fill is one upstream call and one store; a holder
	// that died is taken over once that time is up.
	leaseTTL := cfg.UpstreamTimeout + 2*cfg.RedisTimeout
	eng, err := readthrough.New(readthrough.Options{
		Store:                store,
		Upstream:             up,
		KeySecret:            secret,
		Inject:               inject,
		TTL:                  cfg.CacheTTL,
		NegativeTTL:          cfg.NegativeTTL,
		StaleWhileRevalidate: cfg.SWR,
		StaleIfError:         cfg.StaleTTL,
		TTLJitter:            cfg.TTLJitter,
		EarlyRefreshBeta:     cfg.EarlyBeta,
		RedactFields:         cfg.redactFields(),
		DropHeaders:          cfg.dropResponseHeaders(),
		CacheTimeout:         cfg.RedisTimeout,
		FillTimeout:          cfg.UpstreamTimeout + 2*cfg.RedisTimeout + time.Second,
		Leases:               leases,
		LeaseTTL:             leaseTTL,
		Metrics:              m,
		Logger:               log,
	})
	if err != nil {
		return err
	}
	defer eng.Close() // background refreshes; runs after the servers have drained
	h, err := proxy.New(proxy.Options{
		Engine:                   eng,
		ValidID:                  validID,
		IgnoreClientCacheControl: !cfg.HonorClientCC,
		PassthroughURL:           passURL,
		PassthroughTransport:     up.Transport(),
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

	proxyLn, err := listenProxy(cfg)
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
		"upstream", cfg.UpstreamURL, "auth_mode", cfg.AuthMode, "redis", cfg.RedisURL != "", "fleet_breaker", fleet != nil)
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
	h.Close() // pass-through connections
	adminSrv.Shutdown(sctx)
	up.CloseIdleConnections()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// warnIfRedisDown pings Redis once and warns if it does not answer within
// a second (a first connection may need a TLS handshake). The proxy starts
// and serves anyway, failing open to the upstream; without this, the first
// sign of a wrong -redis-url would be a timeout on the first request.
func warnIfRedisDown(ctx context.Context, ping func(context.Context) error, redisURL string, log *slog.Logger) {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := ping(pctx); err != nil && ctx.Err() == nil {
		log.Warn("redis does not answer: starting anyway; every request fails open to the upstream until it does",
			"redis_url", cache.RedactURL(redisURL), "err", err)
	}
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

// runBackground runs fn (a Redis subscription) for as long as the process
// serves: it is not cancelled with ctx but by stop, which the caller defers
// so that it runs after the servers have drained, and which waits for fn to
// return. An error ending fn is logged with msg.
func runBackground(ctx context.Context, log *slog.Logger, msg string, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil {
			log.Error(msg, "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

// listenProxy opens the proxy listener, whose connections read and write
// with raw system calls under -raw-socket-io.
func listenProxy(cfg Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil || !cfg.RawSocketIO {
		return ln, err
	}
	return rawio.Listener(ln), nil
}
