package cache

import (
	"encoding/binary"
	"fmt"
	"iter"
)

// Header holds the response header fields stored with an entry, encoded as a
// run of fields: uvarint len(name), name, uvarint len(value), value. Names are
// stored as given (callers store canonical MIME names). Nil holds none.
//
// A Header is kept in the encoding it is stored in, so that a hit replays it
// without building a map, and DecodeEntry hands it out without copying.
// Stores refuse an entry whose Header holds more than 64 fields or encodes to
// more than 16 KiB (see MaxHeaderFields and MaxHeaderBytes).
type Header []byte

// Limits on a Header, which DecodeEntry enforces so that garbage cannot pass
// as a header block, and which the stores enforce on Set so that they never
// write an entry they would refuse to read. Upstream answers carry a dozen
// end-to-end fields of well under a kilobyte in all; the limits are far
// above that and still bound what one entry can make a hit replay.
const (
	MaxHeaderFields = 64
	MaxHeaderBytes  = 16 << 10
)

// Add returns h with the field name: value appended.
//
// Like append, it may write into h's spare capacity: keep using the result,
// not h. A Header decoded by DecodeEntry has none, so Add copies it first.
func (h Header) Add(name, value string) Header {
	h = binary.AppendUvarint(h, uint64(len(name)))
	h = append(h, name...)
	h = binary.AppendUvarint(h, uint64(len(value)))
	return append(h, value...)
}

// All iterates over the fields in order. name and value alias h: copy them
// to keep them. It does not allocate.
//
// On a malformed h (not built by Add nor accepted by DecodeEntry) it stops at
// the first field it cannot read; it never panics.
func (h Header) All() iter.Seq2[[]byte, []byte] {
	return func(yield func(name, value []byte) bool) {
		for rest := h; ; {
			name, value, next, ok := rest.cut()
			if !ok || !yield(name, value) {
				return
			}
			rest = next
		}
	}
}

// Get returns the value of the first field named exactly name, and whether
// there is one. It does not allocate.
//
// The value aliases h: copy it to keep it.
func (h Header) Get(name string) ([]byte, bool) {
	for rest := h; ; {
		n, v, next, ok := rest.cut()
		if !ok {
			return nil, false
		}
		if string(n) == name { // compared without converting
			return v, true
		}
		rest = next
	}
}

// cut splits the first field off h. ok is false when h is empty or its first
// field is malformed. Every field takes at least two bytes (its two length
// prefixes), so a loop over cut ends after at most len(h)/2 fields.
func (h Header) cut() (name, value []byte, rest Header, ok bool) {
	name, rest, ok = cutBytes(h)
	if !ok {
		return nil, nil, nil, false
	}
	value, rest, ok = cutBytes(rest)
	if !ok {
		return nil, nil, nil, false
	}
	return name, value, rest, true
}

// cutBytes splits a uvarint length and that many bytes off b. The returned
// bytes have their capacity cut, so that appending to them cannot overwrite
// what follows.
func cutBytes(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	end := w + int(n)
	return b[w:end:end], b[end:], true
}

// check reports whether h is a well-formed header within the limits: every
// field complete, nothing left over, at most MaxHeaderFields fields and
// MaxHeaderBytes bytes. The error does not wrap ErrCorrupt: callers say
// whether a bad header is a corrupt entry or a refused one.
func (h Header) check() error {
	if len(h) > MaxHeaderBytes {
		return fmt.Errorf("header of %d bytes, more than %d", len(h), MaxHeaderBytes)
	}
	fields := 0
	for rest := h; len(rest) > 0; fields++ {
		if fields == MaxHeaderFields {
			return fmt.Errorf("header of more than %d fields", MaxHeaderFields)
		}
		var ok bool
		if _, _, rest, ok = rest.cut(); !ok {
			return fmt.Errorf("malformed header field %d", fields)
		}
	}
	return nil
}
