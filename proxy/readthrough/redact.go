package readthrough

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// redact removes every object member whose name is in fields, at any depth,
// from the JSON document b, in one pass over it. Scalars (and member names)
// keep their exact bytes and everything keeps its order; the structure
// around them is re-emitted compactly. b must be valid JSON (the caller has
// checked).
func redact(b []byte, fields map[string]bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	out := make([]byte, 0, len(b))

	type frame struct {
		object    bool
		first     bool // nothing emitted in this container yet
		expectKey bool // objects: the next token is a member name
	}
	var stack []frame
	skipping, skipDepth := false, 0 // inside a redacted member's value
	var prev int64

	// valueDone marks the end of a value in the current container.
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expectKey = true
		}
	}
	// separate writes the comma before a new element or member.
	separate := func() {
		if n := len(stack); n > 0 {
			if !stack[n-1].first {
				out = append(out, ',')
			}
			stack[n-1].first = false
		}
	}

	for {
		t, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		off := dec.InputOffset()
		raw := bytes.TrimLeft(b[prev:off], " \t\r\n,:")
		prev = off
		delim, isDelim := t.(json.Delim)

		if skipping {
			switch {
			case isDelim && (delim == '{' || delim == '['):
				skipDepth++
			case isDelim:
				skipDepth--
			}
			if skipDepth == 0 {
				skipping = false
				valueDone()
			}
			continue
		}

		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey && !isDelim {
			name, _ := t.(string)
			stack[n-1].expectKey = false
			if fields[name] {
				skipping, skipDepth = true, 0
				// A scalar value is one token; a container ends at depth 0.
				continue
			}
			separate()
			out = append(out, raw...)
			out = append(out, ':')
			continue
		}

		switch {
		case isDelim && (delim == '{' || delim == '['):
			if n := len(stack); n == 0 || !stack[n-1].object {
				separate() // array element (members were separated at their name)
			}
			out = append(out, byte(delim))
			stack = append(stack, frame{object: delim == '{', first: true, expectKey: delim == '{'})
		case isDelim:
			out = append(out, byte(delim))
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			if n := len(stack); n > 0 && !stack[n-1].object {
				separate()
			}
			out = append(out, raw...)
			valueDone()
		}
	}
	if len(stack) != 0 || skipping {
		return nil, errors.New("redacting: truncated JSON document")
	}
	return out, nil
}
