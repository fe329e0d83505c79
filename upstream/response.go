package upstream

import (
	"io"
	"net/http"
)

// Response is what the upstream answered: any HTTP status, 5xx and 429
// included.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Header holds a copy of every header field the upstream sent
	// (canonical keys); it is never nil. Which of them the proxy stores and
	// replays is its business (hop-by-hop fields and cookies never).
	Header http.Header
	// Body is the whole body, at most Options.MaxBodyBytes, byte for byte as
	// received (JSON validity is the caller's business). Empty, not nil, for
	// an empty body.
	Body []byte
}

// copyHeaders returns a deep copy of h, so the Response keeps nothing of
// the transport's.
func copyHeaders(h http.Header) http.Header {
	if h == nil {
		return http.Header{}
	}
	return h.Clone()
}

// drainLimit is how much of an unread body is discarded before closing it so
// the connection can be reused; past that, closing (and redialling) is cheaper.
const drainLimit = 64 << 10

// drainClose discards up to drainLimit bytes of body and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
	_ = body.Close()
}

// readBody reads r to EOF, failing with ErrBodyTooLarge past limit bytes.
// It reads through io.LimitReader(limit+1) so one byte too many is detected
// without reading more. A trusted Content-Length (at most limit) sizes the
// buffer up front, saving io.ReadAll's repeated growth on the hot path.
func readBody(r io.Reader, contentLength, limit int64) ([]byte, error) {
	size := int64(512)
	if contentLength >= 0 && contentLength <= limit {
		// +1 leaves room for the read that returns io.EOF without growing.
		size = contentLength + 1
	}
	buf := make([]byte, 0, size)
	lr := io.LimitReader(r, limit+1)
	for {
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
	if int64(len(buf)) > limit {
		return nil, ErrBodyTooLarge
	}
	return buf, nil
}
