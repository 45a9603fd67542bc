package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Sealer encrypts secrets at rest with AES-256-GCM under the gateway's secret key.
// Sealed values are base64("v1" || nonce || ciphertext+tag).
type Sealer struct{ aead cipher.AEAD }

// ErrBadSecretKey: the secret key is not 32 bytes of base64.
var ErrBadSecretKey = errors.New("secret key must be 32 bytes, base64-encoded")

// NewSealer takes the 32-byte key as standard or URL base64.
func NewSealer(b64key string) (*Sealer, error) {
	key, err := base64.StdEncoding.DecodeString(b64key)
	if err != nil {
		key, err = base64.URLEncoding.DecodeString(b64key)
	}
	if err != nil || len(key) != 32 {
		return nil, ErrBadSecretKey
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// GenerateSecretKey returns a fresh random key in the form NewSealer takes.
func GenerateSecretKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// Seal encrypts plaintext; ad binds the ciphertext to its place (e.g. the record key).
func (s *Sealer) Seal(plaintext []byte, ad string) string {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := append([]byte("v1"), nonce...)
	out = s.aead.Seal(out, nonce, plaintext, []byte(ad))
	return base64.StdEncoding.EncodeToString(out)
}

// Open decrypts a value made by Seal with the same ad.
func (s *Sealer) Open(sealed, ad string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(raw) < 2+s.aead.NonceSize() || string(raw[:2]) != "v1" {
		return nil, errors.New("store: sealed value is malformed")
	}
	raw = raw[2:]
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("store: cannot open sealed value (wrong secret key?): %w", err)
	}
	return pt, nil
}

// HashKey is how API keys are stored: hex SHA-256. Keys carry ≥128 random bits, so a
// plain hash (no salt, no stretching) is the right tool and lets lookup be one GET.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// KeyEqual compares two key hashes in constant time.
func KeyEqual(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }

// NewAPIKey returns a key with the given prefix and 192 random bits (32 base62 chars).
func NewAPIKey(prefix string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	out := make([]byte, 0, 32)
	buf := make([]byte, 64)
	for len(out) < 32 {
		_, _ = rand.Read(buf)
		for _, c := range buf {
			if c < 248 && len(out) < 32 { // 248 = 4*62: no modulo bias
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return prefix + string(out)
}
