package proxy

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// AccessLogOptions configures AccessLog. Zero values are documented defaults.
type AccessLogOptions struct {
	// Logger receives one Info record ("request") per logged request. Nil
	// means no access log: AccessLog returns next unchanged.
	Logger *slog.Logger
	// SampleRate is the fraction of requests logged, from 0 to 1: 0 logs
	// none (AccessLog returns next unchanged), 1 logs every request. Answers
	// with a 5xx status are always logged, whatever the rate, so failures are
	// never sampled away.
	SampleRate float64
	// Rand returns a number in [0, 1) for the sampling decision. Nil means
	// math/rand/v2.Float64.
	Rand func() float64
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// AccessLog wraps next and logs a sample of the requests it answers: method,
// escaped path (never the query, which could carry secrets on pass-through
// traffic), status, body bytes, duration, the Cache-Status the proxy set,
// the request id (see WithRequestID) and the client address. Credentials
// and other request headers are never logged. A nil next panics.
func AccessLog(next http.Handler, opts AccessLogOptions) http.Handler {
	if next == nil {
		panic("proxy: AccessLog: nil handler")
	}
	al := newAccessLogger(opts)
	if al == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := al.now()
		sampled := al.sample()
		lw := &loggingWriter{ResponseWriter: w}
		next.ServeHTTP(lw, r)
		status := lw.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http answers 200
		}
		if !sampled && status < 500 {
			return
		}
		al.log(r.Context(), r.Method, r.URL.EscapedPath(), status, lw.bytes, start,
			w.Header().Get("Cache-Status"), RequestIDFrom(r.Context()), r.RemoteAddr)
	})
}

// withDefaults fills in the documented defaults.
func (o AccessLogOptions) withDefaults() AccessLogOptions {
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// loggingWriter records the status and the body bytes written through it.
type loggingWriter struct {
	http.ResponseWriter
	status int   // first status written; 0 if none yet
	bytes  int64 // body bytes written
}

func (l *loggingWriter) WriteHeader(code int) {
	if l.status == 0 && code >= 200 { // 1xx are informational; the final status follows
		l.status = code
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *loggingWriter) Write(p []byte) (int, error) {
	if l.status == 0 {
		l.status = http.StatusOK
	}
	n, err := l.ResponseWriter.Write(p)
	l.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer (flushes
// from the pass-through ReverseProxy).
func (l *loggingWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// accessLogger is AccessLog's decision and record, shared by both fronts.
type accessLogger struct{ opts AccessLogOptions }

// newAccessLogger returns nil when opts log nothing.
func newAccessLogger(opts AccessLogOptions) *accessLogger {
	if opts.Logger == nil || opts.SampleRate <= 0 {
		return nil
	}
	return &accessLogger{opts: opts.withDefaults()}
}

func (a *accessLogger) now() time.Time { return a.opts.Now() }

func (a *accessLogger) sample() bool {
	return a.opts.SampleRate >= 1 || a.opts.Rand() < a.opts.SampleRate
}

func (a *accessLogger) log(ctx context.Context, method, path string, status int, n int64, start time.Time, cacheStatus, requestID, remote string) {
	a.opts.Logger.LogAttrs(ctx, slog.LevelInfo, "request",
		slog.String("method", method),
		slog.String("path", path),
		slog.Int("status", status),
		slog.Int64("bytes", n),
		slog.Float64("duration_seconds", a.opts.Now().Sub(start).Seconds()),
		slog.String("cache_status", cacheStatus),
		slog.String("request_id", requestID),
		slog.String("remote", remote),
	)
}
