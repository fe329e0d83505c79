// Command pubsub measures what the invalidation feed's fan-out costs: with
// N subscribed connections on the feed's channel (one per replica, as each
// replica's in-process tier holds one subscription and pings on it every
// -l1-ttl/4), it publishes invalidations one at a time and reports
//
//   - the PUBLISH round trip seen by the publisher (Redis writes the message
//     to every local subscriber's buffer before it answers),
//   - the delivery time, from sending the PUBLISH to the moment the last
//     subscriber has the message,
//   - the Redis CPU per PUBLISH: the growth of used_cpu_sys+used_cpu_user
//     over every node (INFO cpu), divided by the publishes, minus what the
//     same subscribers cost while idle for as long (their heartbeats),
//
// for each subscriber count in -subscribers:
//
//	pubsub -redis-url redis://127.0.0.1:7000 -subscribers 0,50,200 -n 1000 -runs 2
//	pubsub -redis-url redis-cluster://127.0.0.1:7000,127.0.0.1:7001 ...
//
// On a Cluster the subscribers land on the master of the channel's slot, as
// go-redis's ClusterClient puts every replica's subscription there, and the
// publisher talks to another master, as the invalidation script of most
// users runs on another master: classic PUBLISH then crosses the cluster
// bus to every node. It prints one tab-separated line per run and count.
//
// It only publishes on its own channel (-channel, a name no proxy uses by
// default) and writes no key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/userproxy/userproxy/cache"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.URL, "redis-url", "", "redis:// or redis-cluster:// URL (as -redis-url of userproxy)")
	subs := flag.String("subscribers", "0,50,200", "comma-separated subscriber counts to measure")
	flag.IntVar(&cfg.Publishes, "n", 1000, "publishes measured per subscriber count")
	flag.IntVar(&cfg.Runs, "runs", 2, "runs of every subscriber count")
	flag.DurationVar(&cfg.Heartbeat, "heartbeat", 250*time.Millisecond, "each subscriber pings this often, as a replica's tier does (-l1-ttl/4); 0 = never")
	flag.StringVar(&cfg.Channel, "channel", "userproxy-bench:pubsub", "channel to publish on")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound on the whole run")
	flag.Parse()

	counts, err := parseCounts(*subs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pubsub: %v\n", err)
		os.Exit(2)
	}
	cfg.Subscribers = counts
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "pubsub: %v\n", err)
		os.Exit(1)
	}
}

// config is what one run needs; main fills it from flags.
type config struct {
	URL         string
	Subscribers []int
	Publishes   int
	Runs        int
	Heartbeat   time.Duration
	Channel     string
}

// result is one measurement: one subscriber count, one run.
type result struct {
	Subscribers int
	Publishes   int
	// Publish is the PUBLISH round trip, sorted.
	Publish []time.Duration
	// Deliver is the time from sending each PUBLISH to its last
	// subscriber's receipt, sorted; empty without subscribers.
	Deliver []time.Duration
	// Receivers is what the last PUBLISH answered: the subscribers on the
	// publishing node (0 on a Cluster, where they are on another node).
	Receivers int64
	// CPUPerPublish is the Redis CPU (every node) per publish, less what
	// the idle subscribers cost over as long; may be slightly negative on
	// a noisy host.
	CPUPerPublish time.Duration
}

// deliveryTimeout bounds waiting for one message to reach every
// subscriber; a message still missing then fails the run.
const deliveryTimeout = 10 * time.Second

// run measures every subscriber count cfg.Runs times and writes a line per
// measurement to w.
func run(ctx context.Context, cfg config, w io.Writer) error {
	if cfg.Publishes <= 0 || cfg.Runs <= 0 || len(cfg.Subscribers) == 0 {
		return errors.New("need at least one publish, one run and one subscriber count")
	}
	if cfg.Channel == "" {
		cfg.Channel = "userproxy-bench:pubsub"
	}
	// Subscribers that are slow to be scheduled on a shared host must not
	// turn into timeouts: the point is to measure them.
	client, err := cache.NewUniversalClient(cfg.URL, cache.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer client.Close()
	pubAddr, nodes, err := topology(ctx, client, cfg.Channel)
	if err != nil {
		return err
	}
	pub := redis.NewClient(&redis.Options{Addr: pubAddr, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	defer pub.Close()
	fmt.Fprintf(w, "publishing on %s; %d node(s); heartbeat %s\n", pubAddr, len(nodes), cfg.Heartbeat)
	fmt.Fprintln(w, "run\tsubscribers\tpublishes\tpublish_p50\tpublish_p99\tdeliver_p50\tdeliver_p99\tredis_cpu_per_publish\treceivers")
	for r := 1; r <= cfg.Runs; r++ {
		for _, n := range cfg.Subscribers {
			res, err := measure(ctx, client, pub, nodes, cfg, n)
			if err != nil {
				return fmt.Errorf("run %d, %d subscribers: %w", r, n, err)
			}
			fmt.Fprintln(w, formatResult(r, res))
		}
	}
	return nil
}

// topology returns the address to publish on and every node's address.
// On a Cluster it publishes on a master that does not hold the channel's
// slot; elsewhere on the one node.
func topology(ctx context.Context, client redis.UniversalClient, channel string) (string, []string, error) {
	switch c := client.(type) {
	case *redis.Client:
		if err := c.Ping(ctx).Err(); err != nil {
			return "", nil, fmt.Errorf("pinging redis: %w", err)
		}
		return c.Options().Addr, []string{c.Options().Addr}, nil
	case *redis.ClusterClient:
		owner, err := c.MasterForKey(ctx, channel)
		if err != nil {
			return "", nil, fmt.Errorf("finding the channel's master: %w", err)
		}
		// Every node, replicas included: each receives the broadcast.
		// Lines read "<id> <ip:port@bus> <flags> <master id> ...".
		list, err := c.ClusterNodes(ctx).Result()
		if err != nil {
			return "", nil, fmt.Errorf("listing nodes: %w", err)
		}
		var nodes []string
		other := ""
		for line := range strings.SplitSeq(strings.TrimSpace(list), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || strings.Contains(f[2], "fail") || strings.Contains(f[2], "noaddr") {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			nodes = append(nodes, addr)
			if strings.Contains(f[2], "master") && addr != owner.Options().Addr && other == "" {
				other = addr
			}
		}
		if other == "" {
			other = owner.Options().Addr // a one-master cluster
		}
		slices.Sort(nodes)
		return other, nodes, nil
	default:
		return "", nil, fmt.Errorf("unsupported client %T (want redis:// or redis-cluster://)", client)
	}
}

// measure subscribes n connections, publishes cfg.Publishes messages one
// at a time (each waits for the previous one's delivery), and unsubscribes.
func measure(ctx context.Context, client redis.UniversalClient, pub *redis.Client, nodes []string, cfg config, n int) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := cfg.Publishes + warmup
	tr := newTracker(total, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before wg.Wait: stops the subscribers
	for range n {
		ps := client.Subscribe(ctx, cfg.Channel)
		// The confirmation says the subscription is in place before the
		// first publish.
		if _, err := ps.ReceiveTimeout(ctx, deliveryTimeout); err != nil {
			ps.Close()
			return result{}, fmt.Errorf("subscribing: %w", err)
		}
		wg.Go(func() { receive(ctx, ps, tr) })
		wg.Go(func() { heartbeat(ctx, ps, cfg.Heartbeat) })
	}

	// What the subscribers cost idle (their heartbeats) is measured over a
	// short while first and subtracted per unit of time.
	idleFor := 500 * time.Millisecond
	cpu0, err := redisCPU(ctx, nodes)
	if err != nil {
		return result{}, err
	}
	select {
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-time.After(idleFor):
	}
	cpu1, err := redisCPU(ctx, nodes)
	if err != nil {
		return result{}, err
	}
	idleRate := float64(cpu1-cpu0) / float64(idleFor)

	res := result{Subscribers: n, Publishes: cfg.Publishes}
	start := time.Now()
	for seq := range total {
		if seq == warmup {
			if cpu1, err = redisCPU(ctx, nodes); err != nil {
				return result{}, err
			}
			start = time.Now()
		}
		sent := time.Now()
		tr.sent(seq, sent)
		receivers, err := pub.Publish(ctx, cfg.Channel, "id:"+strconv.Itoa(seq)).Result()
		rtt := time.Since(sent)
		if err != nil {
			return result{}, fmt.Errorf("publishing: %w", err)
		}
		if n > 0 {
			if err := tr.wait(ctx, seq, deliveryTimeout); err != nil {
				return result{}, err
			}
		}
		if seq >= warmup {
			res.Publish = append(res.Publish, rtt)
			if n > 0 {
				res.Deliver = append(res.Deliver, tr.delivered(seq))
			}
			res.Receivers = receivers
		}
	}
	elapsed := time.Since(start)
	cpu2, err := redisCPU(ctx, nodes)
	if err != nil {
		return result{}, err
	}
	busy := float64(cpu2-cpu1) - idleRate*float64(elapsed)
	res.CPUPerPublish = time.Duration(busy / float64(cfg.Publishes))
	slices.Sort(res.Publish)
	slices.Sort(res.Deliver)
	return res, nil
}

// warmup publishes go out before the measured ones, so that connections
// and buffers are warm.
const warmup = 20

// receive counts every message ps receives into tr until ctx is done (and
// heartbeat has closed ps: a blocked Receive does not watch ctx).
func receive(ctx context.Context, ps *redis.PubSub, tr *tracker) {
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
				return
			}
			continue // go-redis reconnects; the run fails on a lost message
		}
		if m, ok := msg.(*redis.Message); ok {
			if seq, err := strconv.Atoi(strings.TrimPrefix(m.Payload, "id:")); err == nil {
				tr.got(seq, time.Now())
			}
		}
	}
}

// heartbeat pings on ps every interval (never if it is 0) until ctx is
// done, as the tier's invalidation feed does, then closes ps, which ends
// receive's Receive.
func heartbeat(ctx context.Context, ps *redis.PubSub, interval time.Duration) {
	defer ps.Close()
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			_ = ps.Ping(ctx, "hb")
		}
	}
}

// redisCPU returns the CPU time every node has used so far.
func redisCPU(ctx context.Context, nodes []string) (time.Duration, error) {
	var sum time.Duration
	for _, addr := range nodes {
		c := redis.NewClient(&redis.Options{Addr: addr})
		info, err := c.Info(ctx, "cpu").Result()
		c.Close()
		if err != nil {
			return 0, fmt.Errorf("reading INFO cpu of %s: %w", addr, err)
		}
		d, err := cpuFromInfo(info)
		if err != nil {
			return 0, fmt.Errorf("node %s: %w", addr, err)
		}
		sum += d
	}
	return sum, nil
}

// cpuFromInfo returns used_cpu_sys + used_cpu_user from an INFO reply.
func cpuFromInfo(info string) (time.Duration, error) {
	var sum float64
	found := 0
	for line := range strings.SplitSeq(info, "\n") {
		name, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_sys" && name != "used_cpu_user") {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return 0, fmt.Errorf("%s is not a number: %q", name, val)
		}
		sum += f
		found++
	}
	if found != 2 {
		return 0, errors.New("INFO cpu lacks used_cpu_sys or used_cpu_user")
	}
	return time.Duration(sum * float64(time.Second)), nil
}

// tracker follows each message until every subscriber has it.
type tracker struct {
	subscribers int32
	sentAt      []atomic.Int64 // Unix ns, by sequence number
	left        []atomic.Int32 // subscribers still missing each message
	doneAt      []atomic.Int64 // Unix ns of the last receipt, 0 until then
	done        []chan struct{}
}

func newTracker(messages, subscribers int) *tracker {
	t := &tracker{
		subscribers: int32(subscribers),
		sentAt:      make([]atomic.Int64, messages),
		left:        make([]atomic.Int32, messages),
		doneAt:      make([]atomic.Int64, messages),
		done:        make([]chan struct{}, messages),
	}
	for i := range t.done {
		t.left[i].Store(int32(subscribers))
		t.done[i] = make(chan struct{})
	}
	return t
}

// sent records when message seq was sent.
func (t *tracker) sent(seq int, at time.Time) { t.sentAt[seq].Store(at.UnixNano()) }

// got records one subscriber's receipt of seq; the last one closes it.
// A sequence number out of range (another publisher's) is ignored.
func (t *tracker) got(seq int, at time.Time) {
	if seq < 0 || seq >= len(t.left) {
		return
	}
	if t.left[seq].Add(-1) == 0 {
		t.doneAt[seq].Store(at.UnixNano())
		close(t.done[seq])
	}
}

// wait waits until every subscriber has seq.
func (t *tracker) wait(ctx context.Context, seq int, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-t.done[seq]:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("message %d reached %d of %d subscribers within %s", seq, t.subscribers-t.left[seq].Load(), t.subscribers, timeout)
	}
}

// delivered returns how long seq took to reach its last subscriber.
func (t *tracker) delivered(seq int) time.Duration {
	return time.Duration(t.doneAt[seq].Load() - t.sentAt[seq].Load())
}

// percentile returns the p-th percentile (nearest rank) of sorted, 0 if
// it is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// formatResult renders one result as a line of the table run prints.
func formatResult(run int, r result) string {
	us := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 0, 64) + "µs" }
	deliver50, deliver99 := "-", "-"
	if len(r.Deliver) > 0 {
		deliver50, deliver99 = us(percentile(r.Deliver, 50)), us(percentile(r.Deliver, 99))
	}
	return fmt.Sprintf("%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%d", run, r.Subscribers, r.Publishes,
		us(percentile(r.Publish, 50)), us(percentile(r.Publish, 99)), deliver50, deliver99,
		us(r.CPUPerPublish), r.Receivers)
}

// parseCounts parses "0,50,200".
func parseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-subscribers: %q is not a count", f)
		}
		out = append(out, n)
	}
	return out, nil
}
