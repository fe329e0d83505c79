package cache

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/userproxy/userproxy/internal/redistest"
)

// connSettings are the settings NewUniversalClient controls, whatever the kind of client.
type connSettings struct {
	dial, read, write time.Duration
	poolSize          int
	ctxTimeout        bool
}

func settingsOf(cfg clientConfig) connSettings {
	switch {
	case cfg.cluster != nil:
		o := cfg.cluster
		return connSettings{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolSize, o.ContextTimeoutEnabled}
	case cfg.failover != nil:
		o := cfg.failover
		return connSettings{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolSize, o.ContextTimeoutEnabled}
	default:
		o := cfg.simple
		return connSettings{o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolSize, o.ContextTimeoutEnabled}
	}
}

func TestParseClientURL(t *testing.T) {
	defaults := connSettings{dial: time.Second, read: 100 * time.Millisecond, write: 100 * time.Millisecond, ctxTimeout: true}
	tests := []struct {
		name   string
		url    string
		opts   ClientOptions
		check  func(t *testing.T, cfg clientConfig)
		wantCS connSettings
	}{
		{"single node", "redis://10.0.0.5:6380/2", ClientOptions{}, func(t *testing.T, cfg clientConfig) {
			o := mustSimple(t, cfg)
			if o.Addr != "10.0.0.5:6380" || o.DB != 2 || o.TLSConfig != nil {
				t.Errorf("got addr %s db %d tls %v, want 10.0.0.5:6380 db 2 without TLS", o.Addr, o.DB, o.TLSConfig != nil)
			}
		}, defaults},
		{"single node over TLS with password", "rediss://:s3cret@cache.example:6380", ClientOptions{}, func(t *testing.T, cfg clientConfig) {
			o := mustSimple(t, cfg)
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example" || o.Password != "s3cret" {
				t.Errorf("got tls %+v password set %v, want TLS for cache.example and the password", o.TLSConfig, o.Password != "")
			}
		}, defaults},
		{"cluster via addr params", "redis://h1:7000?addr=h2:7001&addr=h3:7002", ClientOptions{}, func(t *testing.T, cfg clientConfig) {
			wantAddrs(t, mustCluster(t, cfg).Addrs, "h1:7000", "h2:7001", "h3:7002")
		}, defaults},
		{"redis-cluster host list", "redis-cluster://app:s3cret@h1:7000,h2:7001,h3", ClientOptions{}, func(t *testing.T, cfg clientConfig) {
			o := mustCluster(t, cfg)
			wantAddrs(t, o.Addrs, "h1:7000", "h2:7001", "h3:6379")
			if o.Username != "app" || o.Password != "s3cret" || o.TLSConfig != nil {
				t.Errorf("got user %q password set %v tls %v, want app, set, none", o.Username, o.Password != "", o.TLSConfig != nil)
			}
		}, defaults},
		{"rediss-cluster", "rediss-cluster://h1:7000,h2:7000/?read_timeout=1s", ClientOptions{}, func(t *testing.T, cfg clientConfig) {
			if o := mustCluster(t, cfg); o.TLSConfig == nil {
				t.Errorf("got no TLS, want TLS")
			}
		}, connSettings{time.Second, time.Second, 100 * time.Millisecond, 0, true}},
		{"sentinel", "redis-sentinel://app:s3cret@s1:26379,s2,[::1]:26380/?master=mymaster&db=3", ClientOptions{}, func(t *testing.T, cfg clientConfig) {
			o := mustFailover(t, cfg)
			wantAddrs(t, o.SentinelAddrs, "s1:26379", "s2:26379", "[::1]:26380")
			if o.MasterName != "mymaster" || o.DB != 3 {
				t.Errorf("got master %q db %d, want mymaster db 3", o.MasterName, o.DB)
			}
			if o.Username != "app" || o.Password != "s3cret" || o.SentinelUsername != "" || o.SentinelPassword != "" {
				t.Errorf("got master user %q, sentinel user %q, want the user info to be the master's", o.Username, o.SentinelUsername)
			}
		}, defaults},
		{"sentinel with its own credentials", "rediss-sentinel://s1/1?master_name=m&sentinel_username=watch&sentinel_password=hunter2", ClientOptions{}, func(t *testing.T, cfg clientConfig) {
			o := mustFailover(t, cfg)
			if o.SentinelUsername != "watch" || o.SentinelPassword != "hunter2" || o.Password != "" || o.DB != 1 || o.TLSConfig == nil {
				t.Errorf("got sentinel user %q, master password set %v, db %d, tls %v; want watch, unset, 1, TLS",
					o.SentinelUsername, o.Password != "", o.DB, o.TLSConfig != nil)
			}
		}, defaults},
		{"options fill what the URL leaves unset", "redis://h:1?read_timeout=2s&pool_size=7", ClientOptions{Timeout: 50 * time.Millisecond, PoolSize: 3}, func(t *testing.T, cfg clientConfig) {
			mustSimple(t, cfg)
		}, connSettings{time.Second, 2 * time.Second, 50 * time.Millisecond, 7, true}},
		{"options", "redis://h:1", ClientOptions{Timeout: 250 * time.Millisecond, PoolSize: 3}, func(t *testing.T, cfg clientConfig) {
			mustSimple(t, cfg)
		}, connSettings{time.Second, 250 * time.Millisecond, 250 * time.Millisecond, 3, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseClientURL(tt.url, tt.opts)
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			tt.check(t, cfg)
			if got := settingsOf(cfg); got != tt.wantCS {
				t.Errorf("got settings %+v, want %+v", got, tt.wantCS)
			}
		})
	}
}

func mustSimple(t *testing.T, cfg clientConfig) *redis.Options {
	t.Helper()
	if cfg.simple == nil {
		t.Fatalf("got %+v, want a single-node client", cfg)
	}
	return cfg.simple
}

func mustCluster(t *testing.T, cfg clientConfig) *redis.ClusterOptions {
	t.Helper()
	if cfg.cluster == nil {
		t.Fatalf("got %+v, want a cluster client", cfg)
	}
	return cfg.cluster
}

func mustFailover(t *testing.T, cfg clientConfig) *redis.FailoverOptions {
	t.Helper()
	if cfg.failover == nil {
		t.Fatalf("got %+v, want a sentinel client", cfg)
	}
	return cfg.failover
}

func wantAddrs(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("got addresses %q, want %q", got, want)
	}
}

func TestNewUniversalClientErrorsHideThePassword(t *testing.T) {
	const secret = "s3cret"
	tests := []struct{ name, url, wantMsg string }{
		{"no scheme", "s3cret@localhost:6379", "missing scheme"},
		{"unknown scheme", "http://u:s3cret@h:6379", `unsupported scheme "http"`},
		{"garbage before ://", "u:s3cret@h://x", "unsupported scheme"},
		{"bad port", "redis://u:s3cret@h:port", "invalid port"},
		{"unescaped slash in password", "redis://u:s3/cret@h:6379", "invalid port"},
		{"bad escape in password", "redis://u:s3cret%zz@h:6379", "percent-escape"},
		{"bad database", "redis://u:s3cret@h:6379/x", "database"},
		{"unknown option", "redis://u:s3cret@h:6379?bogus=1", "bogus"},
		{"bad cluster addr", "redis://u:s3cret@h:6379?addr=nohostport", "addr"},
		{"empty host in list", "redis-cluster://u:s3cret@h1:1,,h2:2", "empty host"},
		{"cluster with a database", "redis-cluster://u:s3cret@h1:1/3", "database"},
		{"sentinel without master", "redis-sentinel://u:s3cret@s1:26379", "master"},
		{"sentinel bad option", "redis-sentinel://u:s3cret@s1:26379?master=m&bogus=1", "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := NewUniversalClient(tt.url, ClientOptions{})
			if err == nil {
				client.Close()
				t.Fatalf("got no error, want one mentioning %q", tt.wantMsg)
			}
			msg := err.Error()
			if strings.Contains(msg, secret) || strings.Contains(msg, "s3") {
				t.Errorf("got error %q, want it without the password", msg)
			}
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("got error %q, want it to mention %q", msg, tt.wantMsg)
			}
			// The configuration check refuses it the same way.
			if verr := ValidateURL(tt.url); verr == nil || verr.Error() != msg {
				t.Errorf("ValidateURL: got %v, want the client's error %q", verr, msg)
			}
		})
	}
}

func TestNewUniversalClientTalksToRedis(t *testing.T) {
	srv := redistest.Start(t)
	client, err := NewUniversalClient(srv.URL(), ClientOptions{PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	r := NewRedis(client, RedisOptions{})
	if err := r.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: got %v, want nil", err)
	}
	if stats := r.PoolStats(); stats.TotalConns == 0 {
		t.Errorf("got pool stats %+v, want at least one connection", stats)
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:s3cret@h:6379/0", "redis://:xxxxx@h:6379/0"},
		{"rediss://user:s3cret@h:6379", "rediss://user:xxxxx@h:6379"},
		{"redis-sentinel://u:s3cret@s1,s2:26379?master=m&sentinel_password=s3cret", "redis-sentinel://u:xxxxx@s1,s2:26379?master=m&sentinel_password=xxxxx"},
		{"redis://u:s3cret%zz@h:6379", "redis://(unparsable)"},
		{"u:s3cret@h://x", "?://(unparsable)"},
		{"s3cret@localhost:6379", "?://(unparsable)"},
	} {
		got := RedactURL(tc.in)
		if got != tc.want {
			t.Errorf("RedactURL(%q): got %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("RedactURL(%q) = %q holds the password", tc.in, got)
		}
	}
}
