package cache

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// entryVersion is the first byte of every encoded entry. Bump it when the
// layout changes: old replicas then read new entries as misses instead of
// misreading them, which makes rolling upgrades safe.
//
// Version 3 added the header block. DecodeEntry still reads version 2 (no
// header block) as an entry without a Header: otherwise, while a rollout
// runs and until every entry has been rewritten, each replica on the new
// release would read every cached entry as a miss and take it from the
// upstream.
const (
	entryVersion   = 3
	entryVersionV2 = 2 // the layout before the header block
)

// Limits the decoder enforces so that garbage cannot pass as an entry.
const (
	minStatus = 100
	maxStatus = 999
)

// AppendBinary appends the encoding of e, written under generation gen, to dst
// and returns the extended slice.
//
// The format is compact and versioned:
//
//	version   1 byte (3)
//	gen       uvarint
//	status    uvarint
//	stored    varint, Unix nanoseconds (0 = zero Time)
//	expires   varint, Unix nanoseconds (0 = zero Time)
//	fetch     uvarint, nanoseconds the upstream call took
//	ctype     uvarint length, then the bytes
//	header    uvarint length, then the bytes of e.Header (see Header)
//	body      every remaining byte
//
// Times are kept to the nanosecond without location or monotonic reading; the
// zero Time encodes as 0 and so does the Unix epoch, which decodes as the zero
// Time. Times outside the years 1678–2262 cannot be represented. Status must be
// 100–999, and e.Header well formed and within its limits (see Header), for
// DecodeEntry to accept the result; the stores check the header before they
// encode.
func (e Entry) AppendBinary(dst []byte, gen uint64) []byte {
	dst = append(dst, entryVersion)
	dst = binary.AppendUvarint(dst, gen)
	dst = binary.AppendUvarint(dst, uint64(e.Status))
	dst = binary.AppendVarint(dst, unixNano(e.Stored))
	dst = binary.AppendVarint(dst, unixNano(e.Expires))
	dst = binary.AppendUvarint(dst, uint64(max(e.Fetch, 0)))
	dst = binary.AppendUvarint(dst, uint64(len(e.ContentType)))
	dst = append(dst, e.ContentType...)
	dst = binary.AppendUvarint(dst, uint64(len(e.Header)))
	dst = append(dst, e.Header...)
	return append(dst, e.Body...)
}

// encodedLen returns len(e.AppendBinary(nil, gen)) within a few bytes
// (an upper bound), for sizing buffers.
func (e Entry) encodedLen() int {
	return 1 + 5*binary.MaxVarintLen64 + len(e.ContentType) + len(e.Header) + len(e.Body)
}

// DecodeEntry decodes an entry encoded by AppendBinary and the generation it
// was written under. Any input that is not such an encoding — empty,
// truncated, an unknown version (including a newer one), an out-of-range
// field, a header block that is malformed or over its limits — yields an
// error wrapping ErrCorrupt; DecodeEntry never panics. A header it accepts
// is well formed throughout, so Header.All and Header.Get see every field.
//
// It also reads version 2, the layout before the header block, as an entry
// with a nil Header (see entryVersion).
//
// To keep decoding cheap, e.Body and e.Header alias b (each is a range of b,
// with its capacity cut so that appending to it cannot overwrite anything):
// the caller must not reuse b while either is in use. A missing body decodes
// as an empty, non-nil slice; an empty header block as a nil Header. The
// only allocation is the ContentType string, and common JSON content types
// do not allocate.
func DecodeEntry(b []byte) (e Entry, gen uint64, err error) {
	if len(b) == 0 {
		return Entry{}, 0, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if b[0] != entryVersion && b[0] != entryVersionV2 {
		return Entry{}, 0, fmt.Errorf("%w: unknown version %d", ErrCorrupt, b[0])
	}
	d := decoder{b: b, off: 1}
	gen = d.uvarint("generation")
	status := d.uvarint("status")
	stored := d.varint("stored time")
	expires := d.varint("expiry time")
	fetch := d.uvarint("fetch time")
	ctLen := d.uvarint("content type length")
	if d.err != nil {
		return Entry{}, 0, d.err
	}
	if fetch > math.MaxInt64 {
		return Entry{}, 0, fmt.Errorf("%w: fetch time out of range", ErrCorrupt)
	}
	if status < minStatus || status > maxStatus {
		return Entry{}, 0, fmt.Errorf("%w: status %d out of range", ErrCorrupt, status)
	}
	if ctLen > uint64(len(b)-d.off) {
		return Entry{}, 0, fmt.Errorf("%w: content type truncated", ErrCorrupt)
	}
	ct := b[d.off : d.off+int(ctLen)]
	d.off += int(ctLen)
	var header Header
	if b[0] != entryVersionV2 {
		hdrLen := d.uvarint("header length")
		if d.err != nil {
			return Entry{}, 0, d.err
		}
		if hdrLen > uint64(len(b)-d.off) {
			return Entry{}, 0, fmt.Errorf("%w: header truncated", ErrCorrupt)
		}
		end := d.off + int(hdrLen)
		if hdrLen > 0 {
			header = Header(b[d.off:end:end])
		}
		if err := header.check(); err != nil {
			return Entry{}, 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		d.off = end
	}
	body := b[d.off:]
	return Entry{
		Status:      int(status),
		ContentType: contentType(ct),
		Header:      header,
		Body:        body[:len(body):len(body)],
		Stored:      fromUnixNano(stored),
		Expires:     fromUnixNano(expires),
		Fetch:       time.Duration(fetch),
	}, gen, nil
}

// decoder reads varints from b, remembering the first error.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, field)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, field)
		return 0
	}
	d.off += n
	return v
}

// contentType returns b as a string without allocating for the content types
// the upstream is expected to send.
func contentType(b []byte) string {
	// The compiler compares string(b) with the cases without converting.
	switch string(b) {
	case "":
		return ""
	case "application/json":
		return "application/json"
	case "application/json; charset=utf-8":
		return "application/json; charset=utf-8"
	case "application/json; charset=UTF-8":
		return "application/json; charset=UTF-8"
	}
	return string(b)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
