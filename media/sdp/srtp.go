package sdp

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// SDES key exchange for SRTP (RFC 4568): a=crypto lines in the offer and the
// answer, each side sending its own master key, which the other decrypts
// with. The suites are the two every SIP device has (RFC 4568 §6.2):
// AES_CM_128_HMAC_SHA1_80 and _32 (a 32-bit RTP tag; RTCP keeps 80 bits).

// Crypto suites.
const (
	SuiteAES80 = "AES_CM_128_HMAC_SHA1_80"
	SuiteAES32 = "AES_CM_128_HMAC_SHA1_32"
)

// DefaultSuites are offered and accepted in this order of preference.
var DefaultSuites = []string{SuiteAES80, SuiteAES32}

// KeyLen is the length of a master key and salt of both suites: 16 + 14.
const KeyLen = 30

// Key is an SRTP master key followed by its master salt. It never prints
// itself: fmt and slog show "[redacted]", so a key cannot reach a log line by
// accident (a Negotiated logged whole included).
type Key [KeyLen]byte

func (Key) String() string                { return "[redacted]" }
func (Key) GoString() string              { return "[redacted]" }
func (Key) LogValue() slog.Value          { return slog.StringValue("[redacted]") }
func (Key) Format(f fmt.State, verb rune) { _, _ = io.WriteString(f, "[redacted]") }
func (Key) MarshalText() ([]byte, error)  { return []byte("[redacted]"), nil }

// MasterKey and MasterSalt split the key for an SRTP context.
func (k *Key) MasterKey() []byte  { return k[:16] }
func (k *Key) MasterSalt() []byte { return k[16:] }

func newKey() Key {
	var k Key
	_, _ = rand.Read(k[:])
	return k
}

// Crypto is one a=crypto line we can use: one inline key, no MKI, no session
// parameters.
type Crypto struct {
	Tag   int
	Suite string
	Key   Key
}

// parseCrypto reads "TAG SUITE inline:KEY[|LIFETIME]" (RFC 4568 §9.1). Lines
// we cannot use (other suites, several keys, an MKI, session parameters such
// as UNENCRYPTED_SRTP or KDR) are false: not an error, only not ours.
func parseCrypto(arg string) (Crypto, bool) {
	f := strings.Fields(arg)
	if len(f) != 3 { // a fourth field is a session parameter
		return Crypto{}, false
	}
	tag, err := strconv.ParseUint(f[0], 10, 30)
	if err != nil {
		return Crypto{}, false
	}
	suite := f[1]
	if suite != SuiteAES80 && suite != SuiteAES32 {
		return Crypto{}, false
	}
	method, params, ok := strings.Cut(f[2], ":")
	if !ok || method != "inline" || strings.Contains(params, ";") {
		return Crypto{}, false
	}
	parts := strings.Split(params, "|")
	switch len(parts) {
	case 1:
	case 2: // a lifetime ("2^31" or a number); an MKI has a colon
		if strings.Contains(parts[1], ":") {
			return Crypto{}, false
		}
	default:
		return Crypto{}, false
	}
	raw, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(parts[0]) // some send it unpadded
	}
	if err != nil || len(raw) != KeyLen {
		return Crypto{}, false
	}
	c := Crypto{Tag: int(tag), Suite: suite}
	copy(c.Key[:], raw)
	return c, true
}

func (c *Crypto) line() string {
	return fmt.Sprintf("a=crypto:%d %s inline:%s\r\n", c.Tag, c.Suite, base64.StdEncoding.EncodeToString(c.Key[:]))
}

// SRTPPolicy is a trunk's rule for media encryption.
type SRTPPolicy uint8

// SRTP policies.
const (
	// SRTPOptional answers an SRTP offer with SRTP and a plain one with
	// plain RTP, and offers SRTP as best effort (RTP/AVP with a=crypto).
	SRTPOptional SRTPPolicy = iota
	// SRTPDisabled uses plain RTP only: an offer that demands SRTP
	// (RTP/SAVP) is refused.
	SRTPDisabled
	// SRTPRequired uses SRTP only: a plain offer is refused with 488, and
	// our offers are RTP/SAVP.
	SRTPRequired
)

func (p SRTPPolicy) String() string {
	switch p {
	case SRTPDisabled:
		return "disabled"
	case SRTPRequired:
		return "required"
	}
	return "optional"
}

// ParseSRTPPolicy reads "disabled", "optional" or "required" (empty: optional).
func ParseSRTPPolicy(s string) (SRTPPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "optional", "":
		return SRTPOptional, nil
	case "disabled":
		return SRTPDisabled, nil
	case "required":
		return SRTPRequired, nil
	}
	return 0, fmt.Errorf("SRTP policy %q: want disabled, optional or required", s)
}

// MarshalText and UnmarshalText let a policy travel as its name in JSON.
func (p SRTPPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
func (p *SRTPPolicy) UnmarshalText(b []byte) error {
	v, err := ParseSRTPPolicy(string(b))
	if err == nil {
		*p = v
	}
	return err
}

// SRTP is what an offer/answer settled for SRTP: the suite, the key we
// encrypt with (ours, sent in our SDP) and the one we decrypt with (theirs).
type SRTP struct {
	Suite  string
	Local  Key
	Remote Key
	tag    int // the offer's a=crypto tag our answer echoes
}

func secureProto(p string) bool { return p == "RTP/SAVP" || p == "RTP/SAVPF" }
