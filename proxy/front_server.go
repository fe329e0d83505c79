package proxy

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// FrontServer is the proxy listener's fasthttp server, with the open
// connections tracked so that a drain that runs out of time can cut them
// (fasthttp's shutdown leaves them running).
type FrontServer struct {
	*fasthttp.Server
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewFrontServer returns the proxy listener's server: a timeout on every
// phase, so slow or hostile clients cannot hold connections open, and the
// proxy's JSON errors for requests it cannot read.
func NewFrontServer(h fasthttp.RequestHandler, writeTimeout time.Duration, log *slog.Logger) *FrontServer {
	s := &FrontServer{conns: map[net.Conn]struct{}{}}
	s.Server = &fasthttp.Server{
		Handler:      h,
		ErrorHandler: frontErrorHandler,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: writeTimeout,
		IdleTimeout:  120 * time.Second,
		// Bounds the request line plus header fields: Basic credentials
		// over 1 KiB still get the proxy's own JSON 401; past this, a JSON
		// 431. fasthttp allocates it whole for every open connection (64
		// KiB cost 8 MiB of heap at 128 connections), so it is sized like
		// nginx's large header buffers rather than net/http's 1 MiB.
		ReadBufferSize:     16 << 10,
		MaxRequestBodySize: 4 << 20, // user writes are small JSON documents
		// Say no more than net/http did: no Server header, and no
		// Content-Type the handler did not set.
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		Logger:                fastLogger{log},
		ConnState: func(c net.Conn, st fasthttp.ConnState) {
			s.mu.Lock()
			defer s.mu.Unlock()
			switch st {
			case fasthttp.StateNew:
				s.conns[c] = struct{}{}
			case fasthttp.StateClosed, fasthttp.StateHijacked:
				delete(s.conns, c)
			}
		},
	}
	return s
}

// CloseAll closes every open connection, in-flight requests included.
func (s *FrontServer) CloseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// fastLogger passes fasthttp's own messages (accept errors, connection
// errors) to the structured log as warnings.
type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...), "component", "fasthttp")
}
