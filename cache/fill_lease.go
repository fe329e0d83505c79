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
// that a waiter polling instead (its subscription down) still finds; both
// name the lease they end, and only its waiters take them. If the holder
// dies, its lease expires and the next waiter to ask takes it over.
//
// Outcomes are opaque strings to this package (the engine encodes them);
// they must not be empty.
//
// Key layout, next to the user's entries (see Redis):
//
//	<prefix>:{<id>}:lease:<scope>  the lease: token, then "w" once anyone waits
//	<prefix>:{<id>}:fill:<scope>   the last holder's token and outcome, for a moment
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
	watchers map[Key][]chan LeaseState
}

// LeaseState is what TryLease found, or an announcement brought.
type LeaseState struct {
	// Token is set when the caller took the lease: it must Release it.
	Token string
	// Holder is the token of the lease the caller waits on: the one held
	// now, or the one whose Outcome this is.
	Holder string
	// Outcome is what Holder released the lease with; "" while it holds it.
	Outcome string
	// Left is how long Holder's lease has left at most, while it holds it.
	Left time.Duration
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
		watchers: map[Key][]chan LeaseState{},
	}
}

// tryLeaseScript takes a lease unless one is held, or, for a caller that
// waits on one, returns the outcome its holder (or a holder that took over
// from it) left. A request that was not waiting, perhaps one after a write,
// takes a lease of its own instead; taking one drops the last outcome, so
// an outcome a waiter finds is always of a fill that began after it did.
//
// KEYS[1] lease key, KEYS[2] outcome key; ARGV[1] token, ARGV[2] TTL in ms,
// ARGV[3] the token of the holder waited on, or "".
// Returns {1} when taken; {0, holder, outcome} for a waiter when an
// outcome is there; {0, holder, "", ms} when holder holds the lease for ms
// more (the lease is then marked as waited on).
const tryLeaseScript = `
if ARGV[3] ~= '' then
  local o = redis.call('GET', KEYS[2])
  if o then return {0, string.sub(o, 1, #ARGV[1]), string.sub(o, #ARGV[1] + 1)} end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return {1}
end
local v = redis.call('GET', KEYS[1])
redis.call('SETRANGE', KEYS[1], #ARGV[1], 'w')
return {0, string.sub(v, 1, #ARGV[1]), '', redis.call('PTTL', KEYS[1])}
`

// releaseLeaseScript ends a lease still held under token: it drops the
// lease, leaves the outcome (after the token) for the waiters that poll
// and, if anyone waited, publishes it.
//
// KEYS[1] lease key, KEYS[2] outcome key; ARGV[1] token, ARGV[2] outcome,
// ARGV[3] outcome TTL in ms, ARGV[4] channel, ARGV[5] message.
// Returns 0 when the lease was no longer ours (expired, perhaps taken over),
// 1 when released, 2 when released and announced.
const releaseLeaseScript = `
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1] .. ARGV[2], 'PX', ARGV[3])
if #v > #ARGV[1] then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return 2
end
return 1
`

// tokenLen is the length of a lease token: 16 hex digits of randomness, so
// a holder whose lease expired cannot release its successor's.
const tokenLen = 16

// TryLease tries to take k's lease for ttl. A non-empty Token means this
// caller holds it and must Release it. Otherwise Holder holds it, for Left
// more at most, or, for a caller waiting on a lease (holder is its token;
// "" for none), Outcome says how the fill went. Call Watch before, and
// TryLease again to poll.
func (l *FillLeases) TryLease(ctx context.Context, k Key, ttl time.Duration, holder string) (LeaseState, error) {
	if err := ValidateKey(k.ID, k.Scope); err != nil {
		return LeaseState{}, fmt.Errorf("taking fill lease: %w", err)
	}
	var b [tokenLen / 2]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	var reply []any
	err := l.r.guard(func() (err error) {
		reply, err = l.try.Run(ctx, l.r.client, []string{l.leaseKey(k), l.outcomeKey(k)}, tok, max(ttl.Milliseconds(), 1), holder).Slice()
		return err
	})
	if err != nil {
		return LeaseState{}, fmt.Errorf("taking fill lease: %w", err)
	}
	if len(reply) == 1 {
		return LeaseState{Token: tok}, nil
	}
	var st LeaseState
	if len(reply) >= 3 {
		st.Holder, _ = reply[1].(string)
		st.Outcome, _ = reply[2].(string)
	}
	if len(reply) == 4 {
		ms, _ := reply[3].(int64)
		st.Left = time.Duration(max(ms, 0)) * time.Millisecond
	}
	if st.Holder == "" || (st.Outcome == "" && len(reply) != 4) {
		return LeaseState{}, errors.New("taking fill lease: unexpected reply")
	}
	return st, nil
}

// Subscribed reports whether Run's subscription is confirmed, so that an
// outcome announced now reaches this replica's watchers.
func (l *FillLeases) Subscribed() bool { return l.subscribed.Load() }

// Release ends k's lease held under token with outcome (not empty), which
// stays readable by the waiters that poll for linger, and is announced to
// the replicas that waited. A lease that expired meanwhile is left to
// whoever holds it now: released reports whether this one still was ours.
func (l *FillLeases) Release(ctx context.Context, k Key, token, outcome string, linger time.Duration) (released bool, err error) {
	if outcome == "" {
		return false, errors.New("releasing fill lease: empty outcome")
	}
	var n int64
	err = l.r.guard(func() (err error) {
		n, err = l.release.Run(ctx, l.r.client, []string{l.leaseKey(k), l.outcomeKey(k)},
			token, outcome, max(linger.Milliseconds(), 1), l.channel, announcement(k, token+outcome)).Int64()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("releasing fill lease: %w", err)
	}
	return n > 0, nil
}

// Watch registers for announcements of k's outcomes until stop is called.
// The channel holds the latest one not yet received (Holder and Outcome
// set); a zero LeaseState asks the watcher to poll now (the subscription
// was re-established, so an announcement may have been missed).
func (l *FillLeases) Watch(k Key) (announced <-chan LeaseState, stop func()) {
	ch := make(chan LeaseState, 1)
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

// notify hands st to k's watchers, replacing any they have not yet
// received; with all, to every watcher of every key.
func (l *FillLeases) notify(k Key, all bool, st LeaseState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	send := func(ch chan LeaseState) {
		select {
		case <-ch:
		default:
		}
		ch <- st // cannot block: buffered, emptied above, one sender (under mu)
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
		msg, err := receive(ctx, ps, func() { l.subscribed.Store(false) })
		if msg == nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				l.subscribed.Store(true)
				l.notify(Key{}, true, LeaseState{})
			}
		case *redis.Message:
			if k, o, ok := parseAnnouncement(m.Payload); ok && len(o) > tokenLen {
				l.notify(k, false, LeaseState{Holder: o[:tokenLen], Outcome: o[tokenLen:]})
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
