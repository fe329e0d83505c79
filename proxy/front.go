package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/userproxy/userproxy/upstream"
)

// The proxy listener is served by fasthttp rather than net/http: on the hit
// path net/http's per-request machinery (a background read goroutine, two
// deadline updates, a header map and a Request per request) costs more
// than the whole cache lookup, and capped a hello-world handler below what
// Varnish serves on the same two cores (bench/RESULTS.md). Cached reads
// (GET|HEAD /api/users/{id}) are answered natively; every other request goes
// through fasthttpadaptor to the same net/http chain ServeHTTP serves, so
// writes, invalidation and pass-through have one implementation.

// FrontOptions configures Front.
type FrontOptions struct {
	// AccessLog configures the sampled access log, for both paths.
	AccessLog AccessLogOptions
}

// Front returns the fasthttp handler of the proxy listener: the same
// behaviour as WithRequestID(AccessLog(h, opts.AccessLog)) under net/http.
func (h *Handler) Front(opts FrontOptions) fasthttp.RequestHandler {
	al := newAccessLogger(opts.AccessLog)
	slow := fasthttpadaptor.NewFastHTTPHandler(detached(WithRequestID(AccessLog(h, opts.AccessLog))))
	return func(c *fasthttp.RequestCtx) {
		if c.IsGet() || c.IsHead() {
			if rest, ok := bytes.CutPrefix(c.Request.Header.RequestURI(), usersPrefixBytes); ok {
				h.serveFront(c, rest, al)
				return
			}
		}
		slow(c)
	}
}

var usersPrefixBytes = []byte(usersPrefix)

// detached gives next a request that owns its memory and its context.
// fasthttpadaptor builds the http.Request over fasthttp's buffers (its
// strings and body alias memory fasthttp reuses for the connection's next
// request) and hands fasthttp's RequestCtx as the context, which is
// recycled once the request is answered and cancelled when the server
// begins to drain. Work that outlives the request (a write's retried
// invalidation, a log line) must not see either, and a graceful shutdown
// must let in-flight requests finish. Only the slow path pays for the
// copies: writes and pass-through.
func detached(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body) // a bytes.Reader over the received body: cannot fail
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, "unreadable request body")
			return
		}
		o := &http.Request{
			Method:        strings.Clone(r.Method),
			RequestURI:    strings.Clone(r.RequestURI),
			Proto:         strings.Clone(r.Proto),
			ProtoMajor:    r.ProtoMajor,
			ProtoMinor:    r.ProtoMinor,
			Header:        cloneHeader(r.Header),
			Trailer:       cloneHeader(r.Trailer),
			Body:          io.NopCloser(bytes.NewReader(body)), // ReadAll's own buffer
			ContentLength: r.ContentLength,
			Host:          strings.Clone(r.Host),
			RemoteAddr:    r.RemoteAddr, // built by net.Addr.String: owned
			TLS:           r.TLS,
		}
		for _, te := range r.TransferEncoding {
			o.TransferEncoding = append(o.TransferEncoding, strings.Clone(te))
		}
		o.URL, err = url.ParseRequestURI(o.RequestURI) // fasthttpadaptor parsed the same text
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, "malformed request target")
			return
		}
		next.ServeHTTP(w, o.WithContext(context.Background()))
	})
}

// cloneHeader deep-copies h, keys and values.
func cloneHeader(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	o := make(http.Header, len(h))
	for k, vs := range h {
		c := make([]string, len(vs))
		for i, v := range vs {
			c[i] = strings.Clone(v)
		}
		o[strings.Clone(k)] = c
	}
	return o
}

// frontHeaders is what one pass over a request's header fields collects.
// Values alias fasthttp's buffers: they are valid only while the request is
// being served and must be copied before they are kept.
type frontHeaders struct {
	auth         []byte
	nAuth        int
	requestID    []byte
	nRequestID   int
	traceparent  []byte
	nTraceparent int
	tracestate   [][]byte
	cc, pragma   []string // rare: copied
}

func (f *frontHeaders) scan(hdr *fasthttp.RequestHeader) {
	for k, v := range hdr.All() {
		// fasthttp normalises field names to their canonical form.
		switch string(k) {
		case "Authorization":
			f.nAuth++
			if f.nAuth == 1 {
				f.auth = v
			}
		case RequestIDHeader:
			f.nRequestID++
			f.requestID = v
		case "Traceparent":
			f.nTraceparent++
			f.traceparent = v
		case "Tracestate":
			f.tracestate = append(f.tracestate, v)
		case "Cache-Control":
			f.cc = append(f.cc, string(v))
		case "Pragma":
			f.pragma = append(f.pragma, string(v))
		}
	}
}

// frontForward is what the upstream call of a request on the fasthttp
// front carries: its id and trace context. It is built into the
// userRequest by value, with no pointer into the serving frame, so a hit
// can keep it on the stack; forward copies it out of fasthttp's buffers
// only when the upstream is called.
type frontForward struct {
	clientID    []byte // the client's X-Request-Id, when well formed
	genID       [requestIDLen]byte
	traceparent []byte // when well formed
	tracestate  [][]byte
}

// set takes f's id and trace context, generating an id if the client's
// will not do.
func (ff *frontForward) set(f *frontHeaders) {
	if f.nRequestID == 1 && visibleASCII(unsafeString(f.requestID), maxRequestIDLen) {
		ff.clientID = f.requestID
	} else {
		putRequestID(&ff.genID)
	}
	if f.nTraceparent == 1 && visibleASCII(unsafeString(f.traceparent), maxTraceparent) {
		ff.traceparent, ff.tracestate = f.traceparent, f.tracestate
	}
}

// id is the request id; valid while the request is served.
func (ff *frontForward) id() []byte {
	if ff.clientID != nil {
		return ff.clientID
	}
	return ff.genID[:]
}

// forward builds the request's upstream.Forward, as WithRequestID does.
func (ff *frontForward) forward() *upstream.Forward {
	fwd := &upstream.Forward{RequestID: string(ff.id())}
	if ff.traceparent != nil {
		fwd.Traceparent = string(ff.traceparent)
		if len(ff.tracestate) > 0 {
			joined := string(bytes.Join(ff.tracestate, []byte{','}))
			if printableASCII(joined, maxTracestateLen) {
				fwd.Tracestate = joined
			}
		}
	}
	return fwd
}

// serveFront answers GET|HEAD /api/users/... natively: serveUser, with the
// request id and access log of the net/http chain.
func (h *Handler) serveFront(c *fasthttp.RequestCtx, rest []byte, al *accessLogger) {
	var start time.Time
	var sampled bool
	if al != nil {
		start, sampled = al.now(), al.sample()
	}
	if q := bytes.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q] // like URL.EscapedPath: the query is not part of the id
	}
	var f frontHeaders
	f.scan(&c.Request.Header)
	u := userRequest{
		ctx:   context.Background(),
		front: true,
		head:  c.IsHead(),
		auth:  unsafeString(f.auth), // only looked up, or copied when kept (scopeCache.put)
		nAuth: f.nAuth,
	}
	u.fwd.set(&f)
	c.Response.Header.SetBytesV(RequestIDHeader, u.fwd.id())
	if h.honorCC {
		u.dir = clientDirectives(f.cc, f.pragma)
	}
	w := acquireFrontWriter(c)
	h.serveUser(w, &u, string(rest))
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if al != nil && (sampled || w.status >= 500) {
		al.log(u.ctx, string(c.Method()), string(c.Request.Header.RequestURI()[:len(usersPrefix)+len(rest)]),
			w.status, w.bytes, start, w.h.Get("Cache-Status"), string(u.fwd.id()), c.RemoteAddr().String())
	}
	releaseFrontWriter(w)
}

// unsafeString views b as a string without copying. The string is valid
// only as long as b is unchanged; callers never keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// frontWriter is an http.ResponseWriter over a fasthttp response, so that
// serveUser writes through one interface on both fronts. The header map is
// pooled with the writer; values are assigned by reference (headers.go) and
// copied into fasthttp's buffers by WriteHeader.
type frontWriter struct {
	c      *fasthttp.RequestCtx
	h      http.Header
	wrote  bool
	status int
	bytes  int64
}

var frontWriters = sync.Pool{New: func() any { return &frontWriter{h: make(http.Header, 8)} }}

func acquireFrontWriter(c *fasthttp.RequestCtx) *frontWriter {
	w := frontWriters.Get().(*frontWriter)
	w.c = c
	return w
}

func releaseFrontWriter(w *frontWriter) {
	clear(w.h)
	*w = frontWriter{h: w.h}
	frontWriters.Put(w)
}

func (w *frontWriter) Header() http.Header { return w.h }

func (w *frontWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote, w.status = true, code
	w.c.SetStatusCode(code)
	rh := &w.c.Response.Header
	for k, vs := range w.h {
		for i, v := range vs {
			if i == 0 {
				rh.Set(k, v)
			} else {
				rh.Add(k, v)
			}
		}
	}
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.c.Write(p)
	w.bytes += int64(n)
	return n, err
}

// frontErrorHandler answers a request fasthttp could not read (malformed,
// header fields too large, body too large, too slow) with the proxy's JSON
// error shape instead of fasthttp's plain text, and closes the connection:
// after a framing error the next request's start is unknown.
func frontErrorHandler(c *fasthttp.RequestCtx, err error) {
	status, msg := http.StatusBadRequest, "malformed request"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		status, msg = http.StatusRequestHeaderFieldsTooLarge, "request header fields too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, msg = http.StatusRequestEntityTooLarge, "request body too large"
	case isTimeout(err):
		status, msg = http.StatusRequestTimeout, "request not received in time"
	}
	c.Response.Reset()
	c.SetConnectionClose()
	w := acquireFrontWriter(c)
	w.Header().Set("Cache-Status", statusBypass)
	writeJSONError(w, status, msg)
	releaseFrontWriter(w)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
