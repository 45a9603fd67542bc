package sip

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	gsip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// digestAuth checks digest credentials (RFC 3261 §22 with RFC 7616's qop=auth and
// nonce count) on the INVITEs of a trunk with InboundAuth. What a captured
// Authorization header is good for:
//
//   - Its nonce is bound to the request it challenged: the source address and the
//     Call-ID go into the nonce's HMAC, so it proves nothing for another call or
//     from another address. A trunk retrying with the same Call-ID (RFC 3261
//     §22.2 asks it to) is not bothered; each new call is challenged.
//   - It lives nonceTTL (30 s); older, the trunk is told stale=true and retries
//     at once without asking anyone for the password.
//   - qop=auth is required, and each nonce count (nc) is good once: a node
//     remembers the highest nc of every nonce it accepted.
//   - The digest-uri must be the Request-URI, so it is not good for another number.
//
// Nonces are stateless otherwise (a timestamp and its HMAC under a key from the
// credentials), so any node sharing the trunk's credentials checks a nonce
// another issued; the nc memory is per node, and a copy replayed to a second node
// within the 30 s must still come from the trunk's address with the call's own
// Call-ID, and set up that very call.
//
// Guessing: every refused Authorization counts against its source address
// (authGuard); after maxAuthFailures in a row the source is locked out, first for
// a second, doubling with each lockout to 5 minutes, and its INVITEs get 403 with
// Retry-After until then. A success clears the count.
type digestAuth struct {
	realm, user, password string
	key                   []byte
	guard                 *authGuard
}

const (
	nonceTTL        = 30 * time.Second
	maxAuthFailures = 5
	lockoutBase     = time.Second
	lockoutMax      = 5 * time.Minute
	// lockoutForget: a source that fails no more for this long starts afresh.
	lockoutForget = 15 * time.Minute
)

// Results of an authentication, counted in metrics (cxco_sip_auth_total{result}).
const (
	AuthOK        = "ok"        // credentials accepted
	AuthChallenge = "challenge" // no credentials: 401 with a challenge
	AuthStale     = "stale"     // right credentials, old nonce: 401 stale=true
	AuthFailed    = "failed"    // wrong credentials, user, realm, uri or qop
	AuthReplay    = "replay"    // a nonce count used before, or a nonce of another call
	AuthLocked    = "locked"    // the source is locked out: 403
)

// AuthObserver is told the result of every digest check; an Observer that also
// implements it gets them.
type AuthObserver interface {
	Auth(result string)
}

func newDigestAuth(realm, user, password string, guard *authGuard) *digestAuth {
	if guard == nil {
		guard = newAuthGuard(nil)
	}
	// The nonce key comes from the credentials, so every node sharing them accepts the
	// nonces any of them issued.
	sum := sha256.Sum256([]byte("cxco-nonce:" + user + ":" + password))
	return &digestAuth{realm: realm, user: user, password: password, key: sum[:], guard: guard}
}

// nonceMAC binds a timestamp to a request: its source address and Call-ID.
func (a *digestAuth) nonceMAC(ts string, src netip.Addr, callID string) string {
	m := hmac.New(sha256.New, a.key)
	fmt.Fprintf(m, "%s|%s|%s", ts, src, callID)
	return hex.EncodeToString(m.Sum(nil))[:32]
}

func (a *digestAuth) nonce(src netip.Addr, callID string) string {
	ts := strconv.FormatInt(a.guard.now().Unix(), 16)
	return ts + "." + a.nonceMAC(ts, src, callID)
}

// nonceValid: made by us for this source and Call-ID, and not older than nonceTTL
// (stale when older).
func (a *digestAuth) nonceValid(n string, src netip.Addr, callID string) (ok, stale bool) {
	ts, mac, found := strings.Cut(n, ".")
	if !found || !hmac.Equal([]byte(mac), []byte(a.nonceMAC(ts, src, callID))) {
		return false, false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false, false
	}
	age := a.guard.now().Sub(time.Unix(sec, 0))
	if age > nonceTTL || age < -time.Minute {
		return false, true
	}
	return true, false
}

// check answers 401 with a challenge, or 403 to a locked-out source, and returns
// false, unless the request carries valid credentials.
func (a *digestAuth) check(req *gsip.Request, tx gsip.ServerTransaction, obs Observer) bool {
	src, callID := requestSource(req), ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	report := func(result string) {
		if ao, ok := obs.(AuthObserver); ok {
			ao.Auth(result)
		}
	}
	if wait := a.guard.locked(src); wait > 0 {
		report(AuthLocked)
		respond(tx, req, 403, "Forbidden (too many failed authentications)",
			gsip.NewHeader("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second))))
		return false
	}
	stale := false
	if h := req.GetHeader("Authorization"); h != nil {
		switch result := a.verify(req, h.Value(), src, callID); result {
		case AuthOK:
			a.guard.succeeded(src)
			report(result)
			return true
		case AuthStale:
			stale = true
			report(result)
		default:
			a.guard.failed(src)
			report(result)
		}
	} else {
		report(AuthChallenge)
	}
	chal := digest.Challenge{Realm: a.realm, Nonce: a.nonce(src, callID), Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
	respond(tx, req, 401, "Unauthorized", gsip.NewHeader("WWW-Authenticate", chal.String()))
	return false
}

// verify checks an Authorization header against the request; see digestAuth.
func (a *digestAuth) verify(req *gsip.Request, header string, src netip.Addr, callID string) string {
	cred, err := digest.ParseCredentials(header)
	if err != nil || cred.Username != a.user || cred.Realm != a.realm || !strings.EqualFold(cred.QOP, "auth") || cred.Cnonce == "" || cred.Nc == 0 {
		return AuthFailed
	}
	if cred.Algorithm != "" && !strings.EqualFold(cred.Algorithm, "MD5") {
		return AuthFailed
	}
	if !sameURI(cred.URI, req.Recipient) {
		return AuthFailed
	}
	valid, stale := a.nonceValid(cred.Nonce, src, callID)
	if !valid && !stale {
		return AuthReplay // not a nonce we gave this call: another call's, or forged
	}
	chal := &digest.Challenge{Realm: a.realm, Nonce: cred.Nonce, Algorithm: "MD5", QOP: []string{"auth"}}
	exp, err := digest.Digest(chal, digest.Options{Method: string(req.Method), URI: cred.URI, Username: a.user,
		Password: a.password, Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil || subtle.ConstantTimeCompare([]byte(exp.Response), []byte(cred.Response)) != 1 {
		return AuthFailed
	}
	if stale {
		return AuthStale // the right password, an old nonce: the trunk retries with a new one
	}
	if !a.guard.useNonce(cred.Nonce, cred.Nc) {
		return AuthReplay
	}
	return AuthOK
}

// sameURI: the digest-uri names the Request-URI (RFC 7616 §3.4.6: the server
// checks it, or a response for one URI would do for any other).
func sameURI(digestURI string, r gsip.Uri) bool {
	if digestURI == r.String() {
		return true
	}
	var u gsip.Uri
	if err := gsip.ParseUri(digestURI, &u); err != nil {
		return false
	}
	port := func(p int) int {
		if p == 0 {
			return 5060
		}
		return p
	}
	return strings.EqualFold(u.Scheme, r.Scheme) && u.User == r.User && strings.EqualFold(u.Host, r.Host) && port(u.Port) == port(r.Port)
}

// requestSource is the address a request came from.
func requestSource(req *gsip.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// authGuard is the server's memory for digest authentication: failures and
// lockouts per source address, and the nonce counts accepted. Both maps are
// bounded (maxGuarded entries; beyond, the oldest half is forgotten).
type authGuard struct {
	now func() time.Time

	mu    sync.Mutex
	fails map[netip.Addr]*authFails
	seen  map[string]seenNonce
	swept time.Time
}

type authFails struct {
	count    int       // failures since the last lockout or success
	lockouts int       // lockouts so far: each doubles the next
	until    time.Time // locked out until
	last     time.Time // last failure
}

type seenNonce struct {
	nc      uint64
	expires time.Time
}

const maxGuarded = 65536

func newAuthGuard(now func() time.Time) *authGuard {
	if now == nil {
		now = time.Now
	}
	return &authGuard{now: now, fails: map[netip.Addr]*authFails{}, seen: map[string]seenNonce{}}
}

// sweep forgets what no longer matters; the caller holds mu.
func (g *authGuard) sweep(now time.Time) {
	if now.Sub(g.swept) < 10*time.Second && len(g.fails) < maxGuarded && len(g.seen) < maxGuarded {
		return
	}
	g.swept = now
	for a, f := range g.fails {
		if now.After(f.until) && now.Sub(f.last) > lockoutForget {
			delete(g.fails, a)
		}
	}
	for n, s := range g.seen {
		if now.After(s.expires) {
			delete(g.seen, n)
		}
	}
	// Still full (a flood of sources): forget the failures of those not locked out.
	for a, f := range g.fails {
		if len(g.fails) < maxGuarded/2 {
			break
		}
		if now.After(f.until) {
			delete(g.fails, a)
		}
	}
}

// locked says how long src is still locked out (0: it is not).
func (g *authGuard) locked(src netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.fails[src]; f != nil {
		return max(0, f.until.Sub(g.now()))
	}
	return 0
}

func (g *authGuard) failed(src netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.sweep(now)
	f := g.fails[src]
	if f == nil {
		f = &authFails{}
		g.fails[src] = f
	}
	f.count++
	f.last = now
	if f.count >= maxAuthFailures {
		f.count = 0
		f.until = now.Add(min(lockoutBase<<min(f.lockouts, 20), lockoutMax))
		f.lockouts++
	}
}

func (g *authGuard) succeeded(src netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.fails, src)
}

// useNonce records nc for nonce; false when it is not above the highest seen.
func (g *authGuard) useNonce(nonce string, nc int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.sweep(now)
	s, seen := g.seen[nonce]
	if seen && uint64(nc) <= s.nc {
		return false
	}
	g.seen[nonce] = seenNonce{nc: uint64(nc), expires: now.Add(nonceTTL + time.Minute)}
	return true
}
