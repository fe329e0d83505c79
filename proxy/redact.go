package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
)

// redact removes every object member whose name is in fields, at any depth,
// from the JSON document b. Everything else keeps its bytes and its order:
// member values that are not containers are copied as they were, and only
// the containers that are walked are rebuilt (compactly). b must be valid
// JSON (the caller has checked).
func redact(b []byte, fields map[string]bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out bytes.Buffer
	out.Grow(len(b))
	if err := redactValue(dec, &out, fields); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

var errNotJSON = errors.New("redacting: not a JSON document")

// redactValue copies one value from dec to out, dropping the named members
// of every object within it.
func redactValue(dec *json.Decoder, out *bytes.Buffer, fields map[string]bool) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return errNotJSON
	}
	switch raw[0] {
	case '{', '[':
		return redactContainer(raw, out, fields)
	default:
		out.Write(raw)
		return nil
	}
}

func redactContainer(raw []byte, out *bytes.Buffer, fields map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	open, err := dec.Token()
	if err != nil {
		return err
	}
	isObject := open == json.Delim('{')
	out.WriteByte(raw[0])
	first := true
	for dec.More() {
		if isObject {
			t, err := dec.Token()
			if err != nil {
				return err
			}
			name, _ := t.(string)
			if fields[name] {
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					return err
				}
				continue
			}
			if !first {
				out.WriteByte(',')
			}
			nb, _ := json.Marshal(name) // a string always marshals
			out.Write(nb)
			out.WriteByte(':')
		} else if !first {
			out.WriteByte(',')
		}
		first = false
		if err := redactValue(dec, out, fields); err != nil {
			return err
		}
	}
	if isObject {
		out.WriteByte('}')
	} else {
		out.WriteByte(']')
	}
	return nil
}
