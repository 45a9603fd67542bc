package sip

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	gsip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// digestAuth checks RFC 3261 §22 digest credentials on INVITEs from trunks that use
// them (--trunk-user/--trunk-password). Nonces are stateless — a timestamp and its
// HMAC — so any gateway node can check a nonce another issued, within nonceTTL.
type digestAuth struct {
	realm, user, password string
	key                   []byte
	now                   func() time.Time
}

const nonceTTL = 5 * time.Minute

func newDigestAuth(realm, user, password string) *digestAuth {
	// The nonce key comes from the credentials, so every node sharing them accepts the
	// nonces any of them issued.
	sum := sha256.Sum256([]byte("cxco-nonce:" + user + ":" + password))
	return &digestAuth{realm: realm, user: user, password: password, key: sum[:], now: time.Now}
}

func (a *digestAuth) nonce() string {
	ts := strconv.FormatInt(a.now().Unix(), 16)
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(ts))
	return ts + "." + hex.EncodeToString(m.Sum(nil))[:24]
}

// nonceValid: made by us and not older than nonceTTL (stale when older).
func (a *digestAuth) nonceValid(n string) (ok, stale bool) {
	ts, mac, found := strings.Cut(n, ".")
	if !found {
		return false, false
	}
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(ts))
	if !hmac.Equal([]byte(mac), []byte(hex.EncodeToString(m.Sum(nil))[:24])) {
		return false, false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false, false
	}
	if a.now().Sub(time.Unix(sec, 0)) > nonceTTL {
		return false, true
	}
	return true, false
}

// check answers 401 with a challenge (and returns false) unless the request carries
// valid credentials.
func (a *digestAuth) check(req *gsip.Request, tx gsip.ServerTransaction) bool {
	stale := false
	if h := req.GetHeader("Authorization"); h != nil {
		if ok, st := a.verify(req, h.Value()); ok {
			return true
		} else {
			stale = st
		}
	}
	chal := digest.Challenge{Realm: a.realm, Nonce: a.nonce(), Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
	respond(tx, req, 401, "Unauthorized", gsip.NewHeader("WWW-Authenticate", chal.String()))
	return false
}

func (a *digestAuth) verify(req *gsip.Request, header string) (ok, stale bool) {
	cred, err := digest.ParseCredentials(header)
	if err != nil || cred.Username != a.user || cred.Realm != a.realm {
		return false, false
	}
	valid, st := a.nonceValid(cred.Nonce)
	if !valid {
		return false, st
	}
	chal := &digest.Challenge{Realm: a.realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm}
	if cred.QOP != "" {
		chal.QOP = []string{cred.QOP}
	}
	exp, err := digest.Digest(chal, digest.Options{Method: string(req.Method), URI: cred.URI, Username: a.user,
		Password: a.password, Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil {
		return false, false
	}
	return subtle.ConstantTimeCompare([]byte(exp.Response), []byte(cred.Response)) == 1, false
}
