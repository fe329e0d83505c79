package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// FillLeases lets the replicas that share a Redis fill a cold key once
// between them. A replica about to call the upstream for a key first takes
// the key's lease (SET NX PX with a random token, in the key's slot); the
// others wait: the holder's Release tells them how the fill went, by a
// message on a channel when anyone waited, and by a short-lived outcome key
// that a waiter polling instead (its subscription down) still finds. If the
// holder dies, its lease expires and the next waiter to ask takes it over.
//
// Outcomes are opaque strings to this package (the engine encodes them);
// they must not be empty.
//
// Key layout, next to the user's entries (see Redis):
//
//	<prefix>:{<id>}:lease:<scope>  the lease: token, then "w" once anyone waits
//	<prefix>:{<id>}:fill:<scope>   the last holder's outcome, for a moment
//
// Every call goes through the store's circuit breaker and its caller's
// deadline: with Redis slow or down, a caller learns so within its own
// budget and fills on its own.
type FillLeases struct {
	r       *Redis
	channel string
	try     *redis.Script
	release *redis.Script

	subscribed atomic.Bool // Run's subscription is confirmed

	mu       sync.Mutex
	watchers map[Key][]chan string
}

// NewFillLeases returns the fill leases of the replicas sharing r's Redis
// and key prefix. Run must be running for waiters to be woken by
// announcements; without it they find outcomes by polling TryLease.
func NewFillLeases(r *Redis) *FillLeases {
	return &FillLeases{
		r:        r,
		channel:  r.prefix + ":fills",
		try:      redis.NewScript(tryLeaseScript),
		release:  redis.NewScript(releaseLeaseScript),
		watchers: map[Key][]chan string{},
	}
}

// tryLeaseScript takes a lease unless one is held or a holder's outcome is
// still there to read.
//
// KEYS[1] lease key, KEYS[2] outcome key; ARGV[1] token, ARGV[2] TTL in ms.
// Returns {1, "", 0} when taken, {0, outcome, 0} when an outcome is there,
// and {0, "", ms} when another holds the lease for ms more (the lease is
// then marked as waited on).
const tryLeaseScript = `
local o = redis.call('GET', KEYS[2])
if o then return {0, o, 0} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, '', 0} end
redis.call('SETRANGE', KEYS[1], #ARGV[1], 'w')
return {0, '', redis.call('PTTL', KEYS[1])}
`

// releaseLeaseScript ends a lease still held under token: it drops the
// lease, leaves the outcome for pollers and, if anyone waited, publishes it.
//
// KEYS[1] lease key, KEYS[2] outcome key; ARGV[1] token, ARGV[2] outcome,
// ARGV[3] outcome TTL in ms, ARGV[4] channel, ARGV[5] message.
// Returns 0 when the lease was no longer ours (expired, perhaps taken over),
// 1 when released, 2 when released and announced.
const releaseLeaseScript = `
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if #v > #ARGV[1] then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return 2
end
return 1
`

// tokenLen is the length of a lease token: 16 hex digits of randomness, so
// a holder whose lease expired cannot release its successor's.
const tokenLen = 16

// TryLease tries to take k's lease for ttl. A non-empty token means this
// caller holds it and must Release it. Otherwise outcome is what the last
// holder released it with, if that is recent, or "" while another replica
// holds the lease, for left more at most: call Watch before, and TryLease
// again to poll.
func (l *FillLeases) TryLease(ctx context.Context, k Key, ttl time.Duration) (token, outcome string, left time.Duration, err error) {
	if err := ValidateKey(k.ID, k.Scope); err != nil {
		return "", "", 0, fmt.Errorf("taking fill lease: %w", err)
	}
	var b [tokenLen / 2]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	var reply []any
	err = l.r.guard(func() (err error) {
		reply, err = l.try.Run(ctx, l.r.client, []string{l.leaseKey(k), l.outcomeKey(k)}, tok, max(ttl.Milliseconds(), 1)).Slice()
		return err
	})
	if err != nil {
		return "", "", 0, fmt.Errorf("taking fill lease: %w", err)
	}
	if len(reply) != 3 {
		return "", "", 0, errors.New("taking fill lease: unexpected reply")
	}
	won, _ := reply[0].(int64)
	outcome, _ = reply[1].(string)
	ms, _ := reply[2].(int64)
	if won == 1 {
		return tok, "", 0, nil
	}
	return "", outcome, time.Duration(max(ms, 0)) * time.Millisecond, nil
}

// Subscribed reports whether Run's subscription is confirmed, so that an
// outcome announced now reaches this replica's watchers.
func (l *FillLeases) Subscribed() bool { return l.subscribed.Load() }

// Release ends k's lease held under token with outcome (not empty), which
// stays readable by pollers for linger, and is announced to the replicas
// that waited. A lease that expired meanwhile is left to whoever holds it
// now: released reports whether this one still was ours.
func (l *FillLeases) Release(ctx context.Context, k Key, token, outcome string, linger time.Duration) (released bool, err error) {
	if outcome == "" {
		return false, errors.New("releasing fill lease: empty outcome")
	}
	var n int64
	err = l.r.guard(func() (err error) {
		n, err = l.release.Run(ctx, l.r.client, []string{l.leaseKey(k), l.outcomeKey(k)},
			token, outcome, max(linger.Milliseconds(), 1), l.channel, announcement(k, outcome)).Int64()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("releasing fill lease: %w", err)
	}
	return n > 0, nil
}

// Watch registers for announcements of k's outcomes until stop is called.
// The channel holds the latest one not yet received; an empty string asks
// the watcher to poll now (the subscription was re-established, so an
// announcement may have been missed).
func (l *FillLeases) Watch(k Key) (announced <-chan string, stop func()) {
	ch := make(chan string, 1)
	l.mu.Lock()
	l.watchers[k] = append(l.watchers[k], ch)
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		ws := l.watchers[k]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(l.watchers, k)
		} else {
			l.watchers[k] = ws
		}
	}
}

// notify hands outcome to k's watchers, replacing any they have not yet
// received; with all, every watcher of every key.
func (l *FillLeases) notify(k Key, all bool, outcome string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	send := func(ch chan string) {
		select {
		case <-ch:
		default:
		}
		ch <- outcome // cannot block: buffered, emptied above, one sender (under mu)
	}
	if all {
		for _, ws := range l.watchers {
			for _, ch := range ws {
				send(ch)
			}
		}
		return
	}
	for _, ch := range l.watchers[k] {
		send(ch)
	}
}

// Run receives announcements for this replica's watchers until ctx is done.
// Whenever the subscription is (re)established, every watcher is asked to
// poll: announcements may have been missed meanwhile. go-redis's Receive
// reconnects and resubscribes after an error.
func (l *FillLeases) Run(ctx context.Context) error {
	ps := l.r.client.Subscribe(ctx, l.channel)
	// Receive does not end with ctx, only with its deadline or a Close.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer func() {
		if stop() {
			ps.Close()
		}
	}()
	defer l.subscribed.Store(false)
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			l.subscribed.Store(false)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, redis.ErrClosed) {
				return errors.New("fill announcement subscription closed")
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(receiveRetry):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				l.subscribed.Store(true)
				l.notify(Key{}, true, "")
			}
		case *redis.Message:
			if k, outcome, ok := parseAnnouncement(m.Payload); ok {
				l.notify(k, false, outcome)
			}
		}
	}
}

// announcement encodes k's outcome for the channel: each of the scope and
// id length-prefixed (an id may hold any byte the id pattern allows), then
// the outcome.
func announcement(k Key, outcome string) string {
	return strconv.Itoa(len(k.Scope)) + ":" + k.Scope + strconv.Itoa(len(k.ID)) + ":" + k.ID + outcome
}

// parseAnnouncement decodes announcement's encoding; ok is false for
// anything else.
func parseAnnouncement(s string) (k Key, outcome string, ok bool) {
	field := func() (string, bool) {
		i := 0
		for i < len(s) && i < 8 && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i == len(s) || s[i] != ':' {
			return "", false
		}
		n, _ := strconv.Atoi(s[:i])
		s = s[i+1:]
		if n > len(s) {
			return "", false
		}
		f := s[:n]
		s = s[n:]
		return f, true
	}
	if k.Scope, ok = field(); !ok {
		return Key{}, "", false
	}
	if k.ID, ok = field(); !ok || s == "" {
		return Key{}, "", false
	}
	return k, s, true
}

func (l *FillLeases) leaseKey(k Key) string {
	return l.r.prefix + ":{" + k.ID + "}:lease:" + k.Scope
}

func (l *FillLeases) outcomeKey(k Key) string {
	return l.r.prefix + ":{" + k.ID + "}:fill:" + k.Scope
}
