package cache

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// sealedVersion is the first byte of an encrypted value. It differs from
// every plain entry version, so a store without the key reads sealed values
// as misses, never as garbage.
const sealedVersion = 0xE1

// keyIDLen is how many bytes of SHA-256(key) name the key in a sealed value.
const keyIDLen = 4

// Sealer encrypts cached entries at rest with AES-256-GCM. The Redis key
// name is the additional authenticated data, so a value copied to another
// user's or scope's key does not decrypt. Each value names its key by id, so
// keys can rotate: seal with the new key while the old one can still open
// what it sealed.
type Sealer struct {
	current []byte                 // id of the sealing key
	aeads   map[string]cipher.AEAD // by key id
}

// NewSealer returns a Sealer that seals with current and opens values sealed
// with current or any of previous. Every key is 32 bytes.
func NewSealer(current []byte, previous ...[]byte) (*Sealer, error) {
	s := &Sealer{aeads: map[string]cipher.AEAD{}}
	for i, k := range append([][]byte{current}, previous...) {
		if len(k) != 32 {
			return nil, fmt.Errorf("cache encryption key %d: want 32 bytes, got %d", i, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(k)
		id := sum[:keyIDLen]
		if i == 0 {
			s.current = id
		}
		s.aeads[string(id)] = aead
	}
	return s, nil
}

// ParseKey reads a key as given in a key file: exactly 32 raw bytes, or
// their standard base64 encoding (padding optional, surrounding whitespace
// ignored).
func ParseKey(b []byte) ([]byte, error) {
	if len(b) == 32 {
		return b, nil
	}
	s := strings.TrimSpace(string(b))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, errors.New("want exactly 32 raw bytes or their base64 encoding")
}

// seal encrypts plain for the key named aad.
func (s *Sealer) seal(plain []byte, aad string) []byte {
	aead := s.aeads[string(s.current)]
	out := make([]byte, 0, 1+keyIDLen+aead.NonceSize()+len(plain)+aead.Overhead())
	out = append(out, sealedVersion)
	out = append(out, s.current...)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand panics rather than return an error)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, []byte(aad))
}

// open decrypts a sealed value read from the key named aad. Anything else —
// a plain entry, an unknown key, a value moved from another key — is an
// error: the store treats it as a miss. It decrypts in place: the plaintext
// it returns aliases b, and b is overwritten even when open fails.
func (s *Sealer) open(b, aad []byte) ([]byte, error) {
	if len(b) < 1+keyIDLen || b[0] != sealedVersion {
		return nil, fmt.Errorf("%w: not sealed", ErrCorrupt)
	}
	aead, ok := s.aeads[string(b[1:1+keyIDLen])]
	if !ok {
		return nil, fmt.Errorf("%w: sealed with an unknown key", ErrCorrupt)
	}
	rest := b[1+keyIDLen:]
	if len(rest) < aead.NonceSize() {
		return nil, fmt.Errorf("%w: truncated", ErrCorrupt)
	}
	// In place: b is the caller's to overwrite.
	sealed := rest[aead.NonceSize():]
	plain, err := aead.Open(sealed[:0], rest[:aead.NonceSize()], sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: does not authenticate", ErrCorrupt)
	}
	return plain, nil
}
