package cache

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The invalidation feed and its lease: Run keeps the tier in step with every
// replica's invalidations and proves, by heartbeat, that it is (tiered.go
// holds the tier itself).

// leased reports whether the tier holds a lease at now (Unix ns). A lease
// from the future (the wall clock stepped back) is void: unsigned, a
// negative age is huge, so one compare rejects both.
func (t *Tiered) leased(now int64) bool {
	return uint64(now-t.leaseFrom.Load()) < uint64(t.ttl)
}

// Run applies invalidations published by every replica and keeps the lease
// (see Tiered) until ctx is done. Whenever the subscription is
// (re)established, and after any error receiving on it, the whole tier is
// dropped and the lease is void: messages may have been missed.
//
// go-redis's Receive reconnects and resubscribes on a broken connection
// (after returning the error), and Ping does on a failed write. Any ping
// goes out on a connection after its SUBSCRIBE, so its pong comes after the
// subscription's confirmation: by then the tier has been flushed, and the
// floor kills every read that began before that, including reads of data
// an invalidation missed while unsubscribed.
func (t *Tiered) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ps := t.l2.client.Subscribe(ctx, t.channel)
	kick := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { t.heartbeat(ctx, ps, kick) })
	defer func() {
		cancel()
		wg.Wait()
		t.leaseFrom.Store(0)
	}()
	confirmed := false // has a pong come back on this subscription
	for {
		msg, err := receive(ctx, ps, func() {
			t.leaseFrom.Store(0)
			t.dropAllLocal()
		})
		if msg == nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				t.leaseFrom.Store(0)
				t.dropAllLocal()
				confirmed = false
				select { // confirm it now rather than at the next tick
				case kick <- struct{}{}:
				default:
				}
			}
		case *redis.Message:
			if id, ok := strings.CutPrefix(m.Payload, "id:"); ok {
				t.dropLocal(id)
			} else {
				t.dropAllLocal()
			}
			t.received.Add(1) // after the drop: a reader of the count sees it applied
			t.echoed(m.Payload)
		case *redis.Pong:
			sent, err := strconv.ParseInt(m.Payload, 10, 64)
			if err != nil || sent == 0 {
				continue // not one of our heartbeats
			}
			t.leaseFrom.Store(sent)
			if !confirmed {
				confirmed = true
				t.subscribes.Add(1)
			}
		}
	}
}

// heartbeat pings on the subscription every TTL/4 (and when kicked) until
// ctx is done, then closes it, which ends Run's Receive. The payload is the
// send time: the pong that echoes it proves every invalidation Redis ran
// before then has been delivered, so it needs no bookkeeping here. A failed
// ping needs no handling either: without pongs the lease lapses by itself.
func (t *Tiered) heartbeat(ctx context.Context, ps *redis.PubSub, kick <-chan struct{}) {
	defer ps.Close()
	interval := max(t.ttl/4, minHeartbeat)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		// A write only blocks when Redis stops reading; then give up, and
		// go-redis reconnects.
		pctx, pcancel := context.WithTimeout(ctx, max(interval, time.Second))
		_ = ps.Ping(pctx, strconv.FormatInt(t.now().UnixNano(), 10))
		pcancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-kick:
		}
	}
}

// receive returns the next message on ps. A receive error is reported to
// failed (messages may have been missed) and waited out: go-redis
// reconnects and resubscribes after one. msg is nil when ctx is done (err
// nil) or ps was closed (err says so).
func receive(ctx context.Context, ps *redis.PubSub, failed func()) (msg any, err error) {
	for {
		msg, err := ps.Receive(ctx)
		if err == nil {
			return msg, nil
		}
		failed()
		switch {
		case ctx.Err() != nil:
			return nil, nil
		case errors.Is(err, redis.ErrClosed):
			return nil, errors.New("subscription closed")
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(receiveRetry):
		}
	}
}
