package cache

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Topology changes: a Cluster client that finds a failed-over master
// quickly, and reports of every topology reload (ClientOptions.OnTopologyReload).
//
// go-redis's ClusterClient reloads its slot map lazily: on a MOVED or ASK
// reply, on READONLY, and when a command finds the map older than
// ClusterStateReloadInterval (60s). A master that dies answers none of
// these: its connections fail, and the retry loop (ClusterClient.process)
// marks the node failing and picks the same dead master again, since the
// slot map still names it, until the periodic reload (go-redis issue #3979).
// So the hooks below ask for a reload whenever a node fails in a way a
// topology change explains.

// Reasons passed to ClientOptions.OnTopologyReload.
const (
	ReloadError    = "error"    // a node failed (connection error, CLUSTERDOWN, TRYAGAIN, LOADING)
	ReloadMoved    = "moved"    // Redis redirected a command with MOVED
	ReloadPeriodic = "periodic" // the slot map reached its maximum age
	ReloadSwitch   = "switch"   // Sentinel named a new master
)

const (
	// reloadGap is the least time between two reloads the hooks ask for.
	// A slot map reload is one CLUSTER SLOTS to one node, run in the
	// background; while a master is down, every failed command would ask
	// for one. go-redis already coalesces reloads with a 200ms cooldown
	// (clusterStateHolder.LazyReload); a gap above it makes each report
	// stand for one reload, and a promoted replica is still found within
	// a quarter of a second of its promotion.
	reloadGap = 250 * time.Millisecond

	// reloadPeriod is the slot map's maximum age: go-redis's default
	// ClusterStateReloadInterval. The hooks reload first (the map is
	// always a little younger than the last request), so that the
	// periodic reloads are counted too; go-redis's own check stays as the
	// backstop. Failures and redirections trigger reloads as they happen,
	// so a shorter period would buy nothing.
	reloadPeriod = 60 * time.Second
)

// clusterReloader asks a ClusterClient to reload its slot map when a node
// fails, at most once per reloadGap, and reports every reload.
type clusterReloader struct {
	client *redis.ClusterClient
	report func(reason string) // never nil
	now    func() time.Time    // time.Now; a test's clock
	// Unix ns of the last reload asked for or reported: for a failure, for
	// a MOVED, and for any reason (periodic reloads count from it). The
	// first two are apart because go-redis reloads on a MOVED whatever
	// this hook does: one soon after a failure must still be reported.
	lastError, lastMoved, last atomic.Int64
}

// watchCluster installs the hooks on every node client c creates. It must
// run before c's first command: go-redis only calls OnNewNode for nodes
// created afterwards.
func watchCluster(c *redis.ClusterClient, report func(reason string)) {
	if report == nil {
		report = func(string) {}
	}
	r := newClusterReloader(c, report, time.Now)
	c.OnNewNode(func(node *redis.Client) { node.AddHook(r) })
}

func newClusterReloader(c *redis.ClusterClient, report func(reason string), now func() time.Time) *clusterReloader {
	r := &clusterReloader{client: c, report: report, now: now}
	r.last.Store(now().UnixNano()) // the first slot map is loaded about now
	return r
}

// reload asks for a reload for reason, unless one was asked for the same
// reason less than reloadGap ago. MOVED needs no request: go-redis reloads
// on it by itself (ClusterClient.process, checkMovedErr); it is only
// reported.
func (r *clusterReloader) reload(reason string) {
	gate := &r.last
	switch reason {
	case ReloadError:
		gate = &r.lastError
	case ReloadMoved:
		gate = &r.lastMoved
	}
	now := r.now().UnixNano()
	last := gate.Load()
	if now-last < int64(reloadGap) || !gate.CompareAndSwap(last, now) {
		return
	}
	r.last.Store(now)
	if reason != ReloadMoved {
		r.client.ReloadState(context.Background()) // asynchronous
	}
	r.report(reason)
}

// observe reloads if err says the topology may have changed, or if the
// slot map is due its periodic reload.
func (r *clusterReloader) observe(err error) {
	switch {
	case err == nil || errors.Is(err, redis.Nil):
	case isMoved(err):
		r.reload(ReloadMoved)
		return
	case nodeFailed(err):
		r.reload(ReloadError)
		return
	}
	if r.now().UnixNano()-r.last.Load() >= int64(reloadPeriod) {
		r.reload(ReloadPeriodic)
	}
}

func isMoved(err error) bool {
	_, ok := redis.IsMovedError(err)
	return ok
}

// nodeFailed reports whether err is a node's failure that a failover or a
// slot migration explains: a connection that could not be made, broke or
// timed out (a dead master, or one cut off by the network), or a cluster
// that is, for now, not serving the slot. The caller's own context error is
// not; a slow but live node's timeouts are, which costs at most a reload
// per reloadGap.
func nodeFailed(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &op), errors.As(err, &dns), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return redis.IsClusterDownError(err) || redis.IsTryAgainError(err) || redis.IsLoadingError(err)
}

// DialHook implements redis.Hook: a node that cannot be dialed may be a
// dead master. It also sees the dials of pub/sub connections, whose
// resubscription (the tier's invalidation feed) picks the node by slot and
// runs no command a ProcessHook would see fail.
//
// It sees the probes of go-redis's pool too: once a node's dials have failed
// PoolSize times, the pool probes it once a second (pool.go, tryDial) until
// it answers or its client is closed, one minute after a slot map without
// it (clusterNodes.GC). So a dead node costs up to one slot map reload (one
// CLUSTER SLOTS) per second per client for about a minute after its
// failover, each reported as ReloadError. That is cheap, and it is what
// finds the promotion when nothing else is sent to the node.
func (r *clusterReloader) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			r.reload(ReloadError)
		}
		return conn, err
	}
}

// ProcessHook implements redis.Hook. On a node client it sees each attempt
// of the cluster's retry loop, so a reload asked for by the first failed
// attempt can serve the later ones.
func (r *clusterReloader) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.observe(err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook: the store's batched reads and
// scripts run in pipelines, whose failures show in the commands' errors.
func (r *clusterReloader) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil {
			for _, cmd := range cmds {
				if err = cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
					break
				}
			}
		}
		r.observe(err)
		return err
	}
}

// watchMaster reports a switch whenever c, a FailoverClient, connects to a
// master other than the one it connected to before. The client needs no
// help to find the new master: it asks a Sentinel at each dial and drops
// its connections to the old master when a Sentinel announces the switch
// (NewFailoverClient's onFailover); this only makes the switch visible.
func watchMaster(c *redis.Client, report func(reason string)) {
	if report == nil {
		return
	}
	c.AddHook(&masterWatch{report: report})
}

// masterWatch remembers the address of the last master dialed.
type masterWatch struct {
	report func(reason string)

	mu   sync.Mutex // protects addr
	addr string     // "" until the first connection
}

// DialHook implements redis.Hook. The addr it is given is not the
// master's (the failover client's dialer asks a Sentinel for that), so it
// reads the connection's remote address.
func (w *masterWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return conn, err
		}
		remote := conn.RemoteAddr().String()
		w.mu.Lock()
		switched := w.addr != "" && w.addr != remote
		w.addr = remote
		w.mu.Unlock()
		if switched {
			w.report(ReloadSwitch)
		}
		return conn, err
	}
}

// ProcessHook implements redis.Hook; it adds nothing.
func (w *masterWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook implements redis.Hook; it adds nothing.
func (w *masterWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
