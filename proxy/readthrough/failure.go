package readthrough

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/userproxy/userproxy/metrics"
	"github.com/userproxy/userproxy/upstream"
)

// upstreamStatusError is an upstream answer the proxy will not pass on as
// data: a 5xx or a 429.
type upstreamStatusError struct {
	status     int
	retryAfter string // the upstream's Retry-After, if any
}

func (e *upstreamStatusError) Error() string {
	return "upstream answered " + strconv.Itoa(e.status)
}

// failure is how the proxy answers when it has no usable data.
type failure struct {
	status     int    // status the proxy answers with
	fwdStatus  int    // upstream status for Cache-Status, 0 if none
	detail     string // Cache-Status detail token
	retryAfter string // Retry-After header value, "" for none
	msg        string // client-facing message (never credentials)
}

// classify maps a fill error to the proxy's answer: the one place where an
// error becomes a status code.
func (e *Engine) classify(err error) failure {
	var se *upstreamStatusError
	switch {
	case errors.As(err, &se):
		if se.status == http.StatusTooManyRequests {
			ra := se.retryAfter
			if ra == "" {
				ra = "1"
			}
			return failure{status: http.StatusTooManyRequests, fwdStatus: se.status, retryAfter: ra,
				msg: "upstream is rate limiting requests; retry later"}
		}
		return failure{status: http.StatusBadGateway, fwdStatus: se.status,
			msg: "upstream answered " + strconv.Itoa(se.status)}
	case errors.Is(err, upstream.ErrBreakerOpen):
		return failure{status: http.StatusServiceUnavailable, detail: "breaker-open",
			// Already whole seconds, at least one (Upstream.RetryAfter).
			retryAfter: strconv.FormatInt(int64(e.upstream.RetryAfter()/time.Second), 10),
			msg:        "upstream unavailable: circuit breaker open"}
	case errors.Is(err, upstream.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		// ErrTimeout also covers the transport's response-header timeout,
		// which is a net.Error, not a context deadline.
		return failure{status: http.StatusGatewayTimeout, detail: "timeout", msg: "upstream timed out"}
	case errors.Is(err, upstream.ErrBodyTooLarge):
		return failure{status: http.StatusBadGateway, fwdStatus: http.StatusOK, detail: "body-too-large",
			msg: "upstream response body too large"}
	case errors.Is(err, errInvalidJSON):
		return failure{status: http.StatusBadGateway, fwdStatus: http.StatusOK, detail: "invalid-json",
			msg: "upstream response is not valid JSON"}
	default:
		// Connection refused or reset: the upstream is not there, which
		// is "unavailable", not a bad answer.
		return failure{status: http.StatusServiceUnavailable, detail: "connection-error", retryAfter: "1",
			msg: "upstream unreachable"}
	}
}

// outcome is f as the answer to a request of kind k.
func (f failure) outcome(k Kind) Outcome {
	return Outcome{Status: f.status, Err: f.msg, RetryAfter: f.retryAfter,
		Kind: k, FwdStatus: f.fwdStatus, Detail: f.detail, Result: metrics.CacheError}
}
