package cache

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"
)

// MemoryOptions configures a Memory store. A zero field means the documented
// default, filled in once by NewMemory.
type MemoryOptions struct {
	// MaxBytes bounds the store's size, counted as the sum of the items' sizes
	// (see Memory). Past it, the least recently used items are evicted. Zero
	// means 64 MiB: tens of thousands of typical user bodies (a few KiB each)
	// at a cost a sidecar can afford.
	MaxBytes int64

	// Now returns the current time. Nil means time.Now; tests inject a clock.
	Now func() time.Time

	// GenerationTTL is how long a user's generation is remembered after its
	// last Invalidate once the user has no items; see Memory. Zero means 24h.
	GenerationTTL time.Duration
}

const defaultMaxBytes = 64 << 20

// itemOverhead approximates what one item costs beyond its strings and body:
// the item struct with its Entry, a list element and a map entry.
const itemOverhead = 256

// Memory is a bounded in-process cache store with the same contract as Redis,
// for a single replica (nothing is shared between processes). It is safe for
// concurrent use.
//
// Size: an item counts len(Body)+len(Header)+len(ContentType)+len(ID)+len(Scope)
// plus a fixed overhead. An item larger than MaxBytes is not stored (not an error).
// Expired items are misses and are removed when next looked up, or evicted
// as least recently used.
//
// Generations: every user with items or a recent Invalidate has a record with
// its generation. Invalidate bumps the generation and deletes the user's items
// at once (the store indexes items per user, so it costs O(scopes of that
// user)). A record with no items is forgotten GenerationTTL after its last
// bump, so records do not pile up; its generation then restarts at 0. That is
// safe because forgetting only matters to a Set that read the generation
// before the bump and arrives after the record was forgotten, i.e. a fill
// lasting GenerationTTL (24h by default), whereas fills are bounded by the
// upstream timeouts (seconds). A fill that read the generation after the bump
// reads a generation > 0 and is refused once it restarts at 0.
type Memory struct {
	maxBytes int64
	now      func() time.Time
	genTTL   time.Duration

	mu    sync.Mutex          // protects lru, users, bumps, bytes, seq and floor
	lru   *list.List          // of *memItem, most recently used first
	users map[string]*memUser // by user id
	bumps *list.List          // of *memUser that have a generation, oldest bump first
	bytes int64               // sum of the items' sizes
	// seq numbers every bump, store-wide, so generations only ever grow:
	// Invalidate sets a user's generation to the next seq, InvalidateAll
	// sets floor to it. A user's generation is max(its own, floor).
	seq   uint64
	floor uint64
}

// memUser is one user's generation and items.
type memUser struct {
	id     string
	gen    uint64
	bumped time.Time                // time of the last Invalidate
	bump   *list.Element            // in Memory.bumps; nil when not queued
	items  map[string]*list.Element // by scope; elements of Memory.lru
}

// memItem is one stored entry. entry.Body and entry.Header are owned by the
// store and never modified after Set copied them in.
type memItem struct {
	user    *memUser
	scope   string
	entry   Entry
	expires time.Time
	size    int64
}

// NewMemory returns an empty Memory store.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GenerationTTL <= 0 {
		opts.GenerationTTL = defaultGenerationTTL
	}
	return &Memory{
		maxBytes: opts.MaxBytes,
		now:      opts.Now,
		genTTL:   opts.GenerationTTL,
		lru:      list.New(),
		users:    make(map[string]*memUser),
		bumps:    list.New(),
	}
}

// Get returns k's entry. ok is false on a miss, including an expired entry.
// gen is the user's current generation; pass it to Set. The returned Body and
// Header are shared with the store, which never modifies them: callers must
// not either.
func (m *Memory) Get(_ context.Context, k Key) (e Entry, gen uint64, ok bool, err error) {
	if err := ValidateKey(k.ID, k.Scope); err != nil {
		return Entry{}, 0, false, fmt.Errorf("reading cache entry: %w", err)
	}
	e, gen, ok = m.GetLocal(k)
	return e, gen, ok, nil
}

// GetLocal is Get without a context: the store is in process memory and
// never blocks on I/O. An invalid key is a miss.
func (m *Memory) GetLocal(k Key) (e Entry, gen uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.users[k.ID]
	if u == nil {
		return Entry{}, m.floor, false
	}
	el := u.items[k.Scope]
	if el == nil {
		return Entry{}, m.genLocked(k.ID), false
	}
	it := el.Value.(*memItem)
	if !m.now().Before(it.expires) {
		m.removeLocked(el)
		// Removing the last item may have forgotten the user's record.
		return Entry{}, m.genLocked(k.ID), false
	}
	m.lru.MoveToFront(el)
	return it.entry, m.genLocked(k.ID), true
}

// Set stores e under k for ttl if the user's generation is still gen;
// otherwise it stores nothing and returns ErrGenerationChanged. The store keeps
// a copy of e.Body and e.Header. A ttl <= 0 or an item bigger than MaxBytes
// stores nothing (and drops k's previous entry) and returns nil. A Header
// past its limits (see Header) is refused with an error, as Redis refuses it.
func (m *Memory) Set(_ context.Context, k Key, e Entry, ttl time.Duration, gen uint64) error {
	if err := ValidateKey(k.ID, k.Scope); err != nil {
		return fmt.Errorf("storing cache entry: %w", err)
	}
	if err := e.Header.check(); err != nil {
		return fmt.Errorf("storing cache entry: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.genLocked(k.ID) != gen {
		return ErrGenerationChanged
	}
	u := m.users[k.ID]
	if u != nil {
		if el := u.items[k.Scope]; el != nil {
			m.removeLocked(el)
			// removeLocked may have forgotten the record; the generation
			// was 0 or is forgotten either way, so start afresh.
			u = m.users[k.ID]
		}
	}
	size := int64(len(e.Body)+len(e.Header)+len(e.ContentType)+len(k.ID)+len(k.Scope)) + itemOverhead
	if ttl <= 0 || size > m.maxBytes {
		return nil
	}
	if u == nil {
		u = &memUser{id: k.ID, items: make(map[string]*list.Element)}
		m.users[k.ID] = u
	}
	// Exact capacities: a caller appending to what Get shares (Header.Add)
	// must get a new array, not write into spare room other callers share.
	e.Body = append(make([]byte, 0, len(e.Body)), e.Body...)
	if e.Header != nil {
		e.Header = append(make(Header, 0, len(e.Header)), e.Header...)
	}
	it := &memItem{user: u, scope: k.Scope, entry: e, expires: m.now().Add(ttl), size: size}
	u.items[k.Scope] = m.lru.PushFront(it)
	m.bytes += size
	for m.bytes > m.maxBytes {
		// The new item fits on its own, so it is never the one evicted.
		m.removeLocked(m.lru.Back())
	}
	return nil
}

// Invalidate drops every scope's entry for user id and bumps the user's
// generation, so that fills which read the old generation are refused.
func (m *Memory) Invalidate(_ context.Context, id string) error {
	if err := ValidateKey(id, ""); err != nil {
		return fmt.Errorf("invalidating cached user: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.pruneLocked(now)
	u := m.users[id]
	if u == nil {
		u = &memUser{id: id, items: make(map[string]*list.Element)}
		m.users[id] = u
	}
	for scope, el := range u.items {
		m.bytes -= el.Value.(*memItem).size
		m.lru.Remove(el)
		delete(u.items, scope)
	}
	m.seq++
	u.gen = m.seq
	u.bumped = now
	if u.bump == nil {
		u.bump = m.bumps.PushBack(u)
	} else {
		m.bumps.MoveToBack(u.bump)
	}
	return nil
}

// Ping always returns nil: memory is always reachable.
func (m *Memory) Ping(context.Context) error { return nil }

// Len returns the number of stored items, including expired ones not yet
// removed.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// Bytes returns the stored items' total size, as counted against MaxBytes.
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// InvalidateAll drops every entry and moves every user's generation past any
// value a fill in progress may have read, so none of them can store.
func (m *Memory) InvalidateAll(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.floor = m.seq
	m.lru.Init()
	m.bumps.Init()
	clear(m.users)
	m.bytes = 0
	return nil
}

// genLocked returns user id's current generation: its own, or the floor set
// by InvalidateAll if that is higher. No record means the floor.
func (m *Memory) genLocked(id string) uint64 {
	if u := m.users[id]; u != nil {
		return max(u.gen, m.floor)
	}
	return m.floor
}

// removeLocked deletes one item and forgets its user's record if it is no
// longer needed.
func (m *Memory) removeLocked(el *list.Element) {
	it := el.Value.(*memItem)
	m.lru.Remove(el)
	delete(it.user.items, it.scope)
	m.bytes -= it.size
	m.forgetIfIdleLocked(it.user, m.now())
}

// forgetIfIdleLocked deletes u's record if it has no items and its generation
// is 0 or was bumped at least GenerationTTL ago (see Memory for why that is safe).
func (m *Memory) forgetIfIdleLocked(u *memUser, now time.Time) {
	if len(u.items) > 0 {
		return
	}
	if u.gen != 0 && now.Sub(u.bumped) < m.genTTL {
		return
	}
	delete(m.users, u.id)
	if u.bump != nil {
		m.bumps.Remove(u.bump)
		u.bump = nil
	}
}

// pruneLocked forgets the records whose last bump is GenerationTTL old. Users
// that still have items keep their record until the last item goes (then
// removeLocked forgets it). Records are queued in bump order, so this stops at
// the first recent one; with an injected clock that goes backwards the order
// may be off, which only delays pruning.
func (m *Memory) pruneLocked(now time.Time) {
	for el := m.bumps.Front(); el != nil; el = m.bumps.Front() {
		u := el.Value.(*memUser)
		if now.Sub(u.bumped) < m.genTTL {
			return
		}
		m.bumps.Remove(el)
		u.bump = nil
		if len(u.items) == 0 {
			delete(m.users, u.id)
		}
	}
}
