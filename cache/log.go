package cache

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SetRedisLogger sends go-redis's own log lines (a pool that cannot dial,
// a Sentinel failover, ...) to log, as Warn records with
// component=go-redis, instead of the plain-text lines go-redis writes to
// stderr by default, which break a JSON log.
//
// go-redis has one logger per process (redis.SetLogger): this sets it for
// every client in the process, whoever made it. So only a program's main
// should call it, once; a library that did would take the logger over from
// its host. It lives here only because this is the one package that
// imports go-redis.
func SetRedisLogger(log *slog.Logger) {
	redis.SetLogger(redisLogger{log})
}

// redisLogger adapts slog to go-redis's logging interface.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	l.log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
}
