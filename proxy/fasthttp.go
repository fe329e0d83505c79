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

	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/proxy/readthrough"
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

// frontRequest is the fasthttp front's per-request state, pooled so that
// a hit allocates nothing: what one pass over the header fields collects,
// the generated request id, and the request's context. Header values
// alias fasthttp's buffers: they are valid only while the request is
// served, and the engine copies what it keeps.
type frontRequest struct {
	ctx   requestContext
	in    received
	auth  string
	nAuth int
	inm   []string // If-None-Match values
	cc    []string // Cache-Control values
	prag  []string // Pragma values
	genID [requestIDLen]byte
}

var frontRequests = sync.Pool{New: func() any { return new(frontRequest) }}

// scan collects f's fields from hdr in one pass. fasthttp normalises field
// names to their canonical form.
func (f *frontRequest) scan(hdr *fasthttp.RequestHeader) {
	for k, v := range hdr.All() {
		switch string(k) {
		case "Authorization":
			f.nAuth++
			if f.nAuth == 1 {
				f.auth = unsafeString(v)
			}
		case RequestIDHeader:
			f.in.ids = append(f.in.ids, unsafeString(v))
		case "Traceparent":
			f.in.traceparents = append(f.in.traceparents, unsafeString(v))
		case "Tracestate":
			f.in.tracestates = append(f.in.tracestates, unsafeString(v))
		case "If-None-Match":
			f.inm = append(f.inm, unsafeString(v))
		case "Cache-Control":
			f.cc = append(f.cc, unsafeString(v))
		case "Pragma":
			f.prag = append(f.prag, unsafeString(v))
		}
	}
}

// reset empties f for its next request, keeping its slices' room.
func (f *frontRequest) reset() {
	f.ctx.reset()
	f.in = received{ids: f.in.ids[:0], traceparents: f.in.traceparents[:0], tracestates: f.in.tracestates[:0]}
	f.auth, f.nAuth = "", 0
	f.inm, f.cc, f.prag = f.inm[:0], f.cc[:0], f.prag[:0]
}

// serveFront answers GET|HEAD /api/users/... natively, with the request id
// and access log of the net/http chain.
func (h *Handler) serveFront(c *fasthttp.RequestCtx, rest []byte, al *accessLogger) {
	start := h.now()
	var logStart time.Time
	var sampled bool
	if al != nil {
		logStart, sampled = al.now(), al.sample()
	}
	if q := bytes.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q] // like URL.EscapedPath: the query is not part of the id
	}
	f := frontRequests.Get().(*frontRequest)
	f.ctx.begin(c.Conn())
	f.scan(&c.Request.Header)
	fwd := f.in.forward()
	if fwd.RequestID == "" {
		putRequestID(&f.genID)
		fwd.RequestID = unsafeString(f.genID[:]) // read only while the request is served
	}
	c.Response.Header.Set(RequestIDHeader, fwd.RequestID)

	var o readthrough.Outcome
	if id, ok := h.checkID(unsafeString(rest)); !ok {
		o = invalidID
	} else {
		req := readthrough.Request{ID: id, Authorization: f.auth, Authorizations: f.nAuth, Forward: fwd, Received: start}
		if h.honorCC {
			req.Directives = readthrough.ParseDirectives(f.cc, f.prag)
		}
		if len(f.inm) > 0 {
			req.IfNoneMatch = joinList(f.inm)
		}
		o = h.eng.Get(&f.ctx, req)
	}
	renderOutcome(c, &o)
	h.observe(o.Result, o.Status, start)
	if al != nil && (sampled || o.Status >= 500 || o.Status == statusClientGone) {
		al.log(&f.ctx, string(c.Method()), string(c.Request.Header.RequestURI()[:len(usersPrefix)+len(rest)]),
			o.Status, int64(len(c.Response.Body())), logStart,
			string(c.Response.Header.Peek("Cache-Status")), fwd.RequestID, c.RemoteAddr().String())
	}
	f.ctx.end()
	f.reset()
	frontRequests.Put(f)
}

// invalidID is the answer to a user id the id rule refuses: an edge's own
// outcome, rendered like the engine's.
var invalidID = readthrough.Outcome{Status: http.StatusBadRequest, Err: msgInvalidID,
	Kind: readthrough.KindRefused, Detail: "invalid-id", Result: metrics.CacheError}

// renderOutcome writes o into c's response: the fasthttp twin of
// writeOutcome (nethttp.go). fasthttp copies each value into its own
// buffers, so nothing here allocates on a hit.
func renderOutcome(c *fasthttp.RequestCtx, o *readthrough.Outcome) {
	if o.Status == statusClientGone {
		c.SetConnectionClose() // nobody reads an answer
		return
	}
	rh := &c.Response.Header
	rh.Set("Cache-Status", cacheStatus(o)[0])
	if o.Err != "" {
		if o.RetryAfter != "" {
			rh.Set("Retry-After", o.RetryAfter)
		}
		if o.Challenge {
			rh.Set("Www-Authenticate", basicChallenge[0])
		}
		writeFastJSONError(c, o.Status, o.Err)
		return
	}
	for name, value := range o.Header.All() {
		rh.AddBytesKV(name, value)
	}
	rh.Set("Age", intValue(o.Age)[0])
	c.SetStatusCode(o.Status)
	if o.NotModified() {
		return
	}
	switch {
	case o.ContentType != "":
		rh.SetContentType(o.ContentType)
	case o.Status == http.StatusOK:
		rh.SetContentType(ctJSON[0]) // validated as JSON before storing
	default:
		rh.Set("X-Content-Type-Options", nosniff[0])
	}
	c.SetBody(o.Body) // fasthttp sends only the headers to a HEAD
}

// writeFastJSONError writes the proxy's own error answer.
func writeFastJSONError(c *fasthttp.RequestCtx, status int, msg string) {
	c.SetStatusCode(status)
	c.Response.Header.SetContentType("application/json")
	c.Response.Header.Set("X-Content-Type-Options", nosniff[0])
	c.SetBody(jsonError(status, msg))
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
	c.Response.Header.Set("Cache-Status", statusBypass[0])
	writeFastJSONError(c, status, msg)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// unsafeString views b as a string without copying. The string is valid
// only as long as b is unchanged; callers never keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
