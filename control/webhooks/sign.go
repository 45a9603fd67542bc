package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Headers of every delivery.
const (
	HeaderEvent     = "X-CXCO-Event"
	HeaderDelivery  = "X-CXCO-Delivery"
	HeaderSignature = "X-CXCO-Signature"
	UserAgent       = "CXCo-Webhooks/1"
)

// Sign returns the X-CXCO-Signature value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a webhook request: header is its X-CXCO-Signature, body the
// raw request body (before any JSON decoding). The HMAC-SHA256 of "<t>.<body>" under
// the webhook's secret must equal one of the v1 values, and t must lie within
// tolerance of now (5 minutes is a good choice), so that a captured request cannot be
// replayed later.
func VerifySignature(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if sig, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, sig)
			}
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrSignatureMalformed
	}
	if age := now.Sub(time.Unix(t, 0)); age > tolerance || age < -tolerance {
		return ErrSignatureExpired
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrSignatureMismatch
}
