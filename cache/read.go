package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A read of an entry is one MGET of the user's generation key and the
// entry key, sent as a redis.RawCmd: go-redis hands its reply over as the
// RESP bytes it read, in a buffer it allocated for that reply alone, which
// splitMGet cuts into the two values without copying them. The entry's Body
// and Header (see DecodeEntry), and a sealed entry's plaintext, can then
// alias that buffer: it is the caller's. go-redis's own MGet reply costs a
// []any, a string and an interface box per value, and then a copy of the
// entry's string into a []byte: a Redis-read hit's largest share of
// allocations after go-redis's own.
//
// A reply that is not two values (an error such as MOVED, ASK, LOADING or
// TRYAGAIN) is a failed read for the breaker, and is read again by go-redis's
// own MGet (see Redis.readSlow), which acts on it: it follows a redirect,
// reloads the Cluster slot map, retries, and the topology hooks see the
// error (see topology.go). go-redis cannot do so for a raw command: to it,
// an error reply is just bytes.

// readCall is one read's MGET. A store pools them: building the keys and the
// command's arguments in a readCall of the pool allocates only the keys'
// one string.
type readCall struct {
	key   []byte    // the generation key's bytes, then the entry key's
	split int       // where the entry key starts in key
	keys  [2]string // both keys, as go-redis sends them: one string, split
	// args is the command: "mget", &keys[0], &keys[1]. Pointers, so that
	// setting new keys boxes (allocates) nothing; go-redis writes a
	// *string and hashes it to its Cluster slot as it does a string.
	args [3]any

	// vals is what the read found: the generation's value, then the
	// entry's; nil where a key is missing.
	vals [2][]byte

	// For the batcher (see readBatcher): the caller's deadline (zero:
	// none), the outcome, and done, buffered so that the worker never blocks
	// on a caller that has left.
	deadline time.Time
	err      error
	done     chan struct{}
}

func newReadCall() any {
	c := &readCall{done: make(chan struct{}, 1)}
	c.args = [3]any{"mget", &c.keys[0], &c.keys[1]}
	return c
}

// newRead returns a readCall of the pool for k's keys.
func (r *Redis) newRead(k Key) *readCall {
	c := r.reads.Get().(*readCall)
	b := append(c.key[:0], r.prefix...)
	b = append(b, ":{"...)
	b = append(b, k.ID...)
	b = append(b, "}:"+genSuffix...)
	c.split = len(b)
	b = append(b, r.prefix...)
	b = append(b, ":{"...)
	b = append(b, k.ID...)
	b = append(b, "}:"...)
	b = append(b, k.Scope...)
	c.key = b
	s := string(b) // both keys' one allocation
	c.keys = [2]string{s[:c.split], s[c.split:]}
	return c
}

// entryKey is c's entry key, the additional data a sealed entry is
// authenticated with. It aliases c: valid until c is released.
func (c *readCall) entryKey() []byte { return c.key[c.split:] }

// release gives c back to r's pool. The caller must not use c, nor the
// batcher hold it, any more; what c read stays the caller's.
func (r *Redis) release(c *readCall) {
	c.keys, c.vals = [2]string{}, [2][]byte{}
	c.deadline, c.err = time.Time{}, nil
	r.reads.Put(c)
}

// cmd returns a new command for c. A command cannot be reused: go-redis
// keeps state in it (its Cluster slot among others) that nothing resets.
func (c *readCall) cmd(ctx context.Context) *redis.RawCmd {
	return redis.NewRawCmd(ctx, c.args[:]...)
}

// take reads cmd's reply into c.vals. It returns cmd's error, or one
// wrapping errNotValues if the reply is not two values.
func (c *readCall) take(cmd *redis.RawCmd) error {
	raw, err := cmd.Result()
	if err != nil {
		return err
	}
	c.vals, err = splitMGet(raw)
	return err
}

// sendRead sends c's MGET alone, on the caller's goroutine, and reads its
// reply into c.vals (see take).
func sendRead(ctx context.Context, client redis.UniversalClient, c *readCall) error {
	cmd := c.cmd(ctx)
	_ = client.Process(ctx, cmd) // the error is cmd's too
	return c.take(cmd)
}

// errNotValues says that an MGET's raw reply is not the two values it asked
// for: go-redis's own MGet is to read it again (see Redis.readSlow).
var errNotValues = errors.New("reply to MGET is not two values")

// readSlow reads c's keys again with go-redis's own MGet, which acts on an
// error reply (see above), into c.vals. It copies the entry out of the
// string go-redis returns; it runs only after a raw read got no values.
func (r *Redis) readSlow(ctx context.Context, c *readCall) error {
	vals, err := r.client.MGet(ctx, c.keys[0], c.keys[1]).Result()
	if err != nil {
		return err
	}
	if len(vals) != 2 {
		return fmt.Errorf("got %d values from MGET, want 2", len(vals))
	}
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
			c.vals[i] = nil
		case string:
			c.vals[i] = []byte(v) // never nil, even when empty
		default:
			return fmt.Errorf("MGET value of unexpected type %T", v)
		}
	}
	return nil
}

// splitMGet cuts the raw RESP reply to an MGET of two keys into the two
// values, which alias raw; a missing key's is nil, an empty value's is
// empty but not nil. It understands RESP2 and RESP3 (a missing key's value
// is a RESP2 null bulk string, or a RESP3 null). Anything else, an error
// reply first of all, yields an error wrapping errNotValues.
func splitMGet(raw []byte) (vals [2][]byte, err error) {
	rest, ok := bytes.CutPrefix(raw, []byte("*2\r\n"))
	if !ok {
		return vals, notValues(raw)
	}
	for i := range vals {
		vals[i], rest, ok = cutBulk(rest)
		if !ok {
			return [2][]byte{}, notValues(raw)
		}
	}
	if len(rest) != 0 {
		return [2][]byte{}, notValues(raw)
	}
	return vals, nil
}

// cutBulk cuts one value of an MGET reply off the front of b: a bulk
// string, or a null (RESP2 "$-1", RESP3 "_"), which yields nil.
func cutBulk(b []byte) (val, rest []byte, ok bool) {
	if rest, ok := bytes.CutPrefix(b, []byte("_\r\n")); ok {
		return nil, rest, true
	}
	if len(b) == 0 || b[0] != '$' {
		return nil, nil, false
	}
	line, rest, ok := bytes.Cut(b[1:], []byte("\r\n"))
	if !ok {
		return nil, nil, false
	}
	if string(line) == "-1" {
		return nil, rest, true
	}
	n, err := strconv.Atoi(string(line))
	if err != nil || n < 0 || n > len(rest)-2 || rest[n] != '\r' || rest[n+1] != '\n' {
		return nil, nil, false
	}
	return rest[:n:n], rest[n+2:], true
}

// notValues wraps errNotValues with the start of raw (an error reply's
// first line says what it is: MOVED 3999 127.0.0.1:6381).
func notValues(raw []byte) error {
	line, _, _ := bytes.Cut(raw, []byte("\r\n"))
	if len(line) > 64 {
		line = line[:64]
	}
	return fmt.Errorf("%w: %q", errNotValues, line)
}
