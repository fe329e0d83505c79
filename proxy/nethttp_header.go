package proxy

import (
	"net/http"
	"sync"

	"github.com/userproxy/userproxy/cache"
)

// replayedFields are an entry's stored header fields in the form
// net/http's header map takes: canonical names and one-element value
// slices, built once per distinct stored header and shared by every hit
// that replays it. A hit then assigns them by reference, as it does the
// precomputed values (render.go), and allocates nothing. The fasthttp
// front needs none of this: it copies the stored bytes.
type replayedFields struct {
	mu    sync.RWMutex // protects m and bytes
	m     map[string][]field
	bytes int // stored header bytes the map holds
}

type field struct {
	name   string
	values []string
}

// maxReplayedBytes bounds what replayedFields holds; past it the map is
// emptied and refilled by the hits that follow. Entries of one tenant
// carry much the same headers, but a derived ETag differs per body, so
// the bound is on bytes, not on entries.
const maxReplayedBytes = 4 << 20

// fields returns h's fields, from the map or built and added to it.
func (r *replayedFields) fields(h cache.Header) []field {
	r.mu.RLock()
	fs, ok := r.m[string(h)] // no allocation for the lookup
	r.mu.RUnlock()
	if ok {
		return fs
	}
	for name, value := range h.All() {
		n := string(name)
		if len(fs) > 0 && fs[len(fs)-1].name == n {
			last := &fs[len(fs)-1]
			last.values = append(last.values[:len(last.values):len(last.values)], string(value))
			continue
		}
		fs = append(fs, field{name: n, values: []string{string(value)}})
	}
	r.mu.Lock()
	if r.m == nil || r.bytes+len(h) > maxReplayedBytes {
		r.m, r.bytes = make(map[string][]field), 0
	}
	r.m[string(h)] = fs
	r.bytes += len(h)
	r.mu.Unlock()
	return fs
}

// replay sets h's fields on hdr. Values are shared and must not be changed
// in place; an Add to one of them reallocates, since each is exactly full.
func (r *replayedFields) replay(hdr http.Header, h cache.Header) {
	if len(h) == 0 {
		return
	}
	for _, f := range r.fields(h) {
		if prev, ok := hdr[f.name]; ok {
			hdr[f.name] = append(prev[:len(prev):len(prev)], f.values...)
			continue
		}
		hdr[f.name] = f.values
	}
}
