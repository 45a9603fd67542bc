package sip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gsip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/cxco/gateway/store"
)

// Registration to the carrier (RFC 3261 §10): for a trunk with registration on,
// one goroutine per trunk keeps a binding of our contact at the trunk's
// registrar. It answers digest challenges (401/407) with the trunk's
// credentials, refreshes before the binding runs out, backs off after failures
// (doubling from RegisterRetry to RegisterRetryMax, with jitter; Retry-After and
// 423 Min-Expires are honoured), moves to the next registrar of the trunk when
// one fails (and back to the primary once it works again), and registers again
// at once when the machine's addresses change (a network change). Calls that the
// carrier sends to the registered contact arrive as ordinary INVITEs; see
// trunkOf and registeredDialled.

// Registration states.
const (
	RegRegistering  = "registering"
	RegRegistered   = "registered"
	RegFailed       = "failed"
	RegUnregistered = "unregistered"
)

// RegistrationStatus is one trunk's registration as this node sees it.
type RegistrationStatus struct {
	TrunkID     int64
	Trunk       string
	Registrar   string // the registrar in use
	AOR         string
	Contact     string
	State       string
	ExpiresAt   time.Time // zero unless registered
	LastError   string
	LastStatus  int
	Failures    int
	NextAttempt time.Time
}

// registrations runs one registration per trunk that asks for one.
type registrations struct {
	s    *Server
	mu   sync.Mutex
	regs map[int64]*registration
	wg   sync.WaitGroup
	// addrs is the machine's addresses when last looked at (network change).
	addrs func() []string
}

type registration struct {
	t      *trunk
	stop   chan struct{}
	kick   chan struct{} // register again now (network change)
	callID string

	mu     sync.Mutex
	status RegistrationStatus
	cseq   uint32
}

func newRegistrations(s *Server) *registrations {
	return &registrations{s: s, regs: map[int64]*registration{}, addrs: localAddrs}
}

// sync starts the registrations of trunks that ask for one, stops those of
// trunks that no longer do (with an un-REGISTER), and restarts changed ones.
func (r *registrations) sync(all []*trunk) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[int64]*trunk{}
	for _, t := range all {
		if t.Registration.Enabled {
			want[t.ID] = t
		}
	}
	for id, reg := range r.regs {
		if t, ok := want[id]; !ok || !sameRegistration(reg.t, t) {
			close(reg.stop)
			delete(r.regs, id)
		}
	}
	for id, t := range want {
		if _, ok := r.regs[id]; ok {
			r.regs[id].t = t // same registration; other settings (codecs, ...) may have changed
			continue
		}
		reg := &registration{t: t, stop: make(chan struct{}), kick: make(chan struct{}, 1),
			callID: gsip.GenerateTagN(24) + "@cxco", cseq: 1}
		reg.status = RegistrationStatus{TrunkID: t.ID, Trunk: t.Name, State: RegRegistering}
		r.regs[id] = reg
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.s.runRegistration(reg) }()
	}
}

func sameRegistration(a, b *trunk) bool {
	return a.Username == b.Username && a.password == b.password && a.RegisterUser() == b.RegisterUser() &&
		slices.Equal(a.Registrars(), b.Registrars()) && a.Registration.Expires == b.Registration.Expires &&
		a.TLS == b.TLS
}

// Registrations is the state of this node's registrations, by trunk id.
func (s *Server) Registrations() []RegistrationStatus { return s.regs.status() }

// status lists every registration's state, by trunk id.
func (r *registrations) status() []RegistrationStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []RegistrationStatus
	for _, reg := range r.regs {
		reg.mu.Lock()
		out = append(out, reg.status)
		reg.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b RegistrationStatus) int { return int(a.TrunkID - b.TrunkID) })
	return out
}

// kickAll registers every binding again now (the network changed).
func (r *registrations) kickAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reg := range r.regs {
		select {
		case reg.kick <- struct{}{}:
		default:
		}
	}
}

// close stops every registration (un-REGISTERing) and waits.
func (r *registrations) close() {
	r.mu.Lock()
	for id, reg := range r.regs {
		close(reg.stop)
		delete(r.regs, id)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// watchNetwork re-registers when the machine's addresses change.
func (r *registrations) watchNetwork(stop <-chan struct{}, every time.Duration) {
	defer r.wg.Done()
	last := strings.Join(r.addrs(), ",")
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := strings.Join(r.addrs(), ",")
		if now != last {
			r.s.log.Info("network addresses changed: registering again", "before", last, "now", now)
			last = now
			r.kickAll()
		}
	}
}

func localAddrs() []string {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return out
}

func (reg *registration) set(f func(st *RegistrationStatus)) {
	reg.mu.Lock()
	f(&reg.status)
	reg.mu.Unlock()
}

// errRegister is a refused or failed REGISTER with its status (0: no answer).
type errRegister struct {
	status     int
	retryAfter time.Duration
	err        error
}

func (e *errRegister) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("REGISTER: %d %s", e.status, e.err)
	}
	return "REGISTER: " + e.err.Error()
}

// runRegistration keeps one trunk registered until stopped.
func (s *Server) runRegistration(reg *registration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-reg.stop; cancel() }()
	idx := 0 // the registrar in use: 0 is the primary
	fails := 0
	var bound string // the registrar holding our binding, for the un-REGISTER
	wait := time.Duration(0)
	expires := reg.t.RegisterExpiry()
	for {
		if wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-reg.stop:
				timer.Stop()
				s.unregister(reg, bound)
				return
			case <-reg.kick:
				timer.Stop()
			case <-timer.C:
			}
		}
		select {
		case <-reg.stop:
			s.unregister(reg, bound)
			return
		default:
		}
		registrars := reg.t.Registrars()
		if idx >= len(registrars) {
			idx = 0
		}
		if fails > 0 && idx != 0 && fails%len(registrars) == 0 {
			idx = 0 // a full round failed: start again at the primary
		}
		target := registrars[idx]
		reg.set(func(st *RegistrationStatus) {
			st.Registrar, st.NextAttempt = target, time.Time{}
			if st.State != RegRegistered {
				st.State = RegRegistering
			}
		})
		granted, err := s.sendRegister(ctx, reg, target, expires)
		if ctx.Err() != nil {
			s.unregister(reg, bound)
			return
		}
		if err == nil {
			fails = 0
			bound = target
			// Refresh ahead of expiry: half way for short bindings, a minute early for long ones.
			wait = granted - min(granted/2, time.Minute)
			reg.set(func(st *RegistrationStatus) {
				st.State, st.ExpiresAt, st.LastError, st.LastStatus, st.Failures = RegRegistered, time.Now().Add(granted), "", 200, 0
				st.NextAttempt = time.Now().Add(wait)
			})
			if idx != 0 {
				// On a fallback registrar: try the primary again at the next refresh.
				s.log.Info("registered with a fallback registrar", "trunk", reg.t.Name, "registrar", target)
			}
			continue
		}
		var re *errRegister
		errors.As(err, &re)
		if re != nil && re.status == 423 && re.retryAfter > 0 { // Interval Too Brief: ask for Min-Expires
			expires = re.retryAfter
			wait = 0
			continue
		}
		fails++
		s.log.Warn("registration failed", "trunk", reg.t.Name, "registrar", target, "err", err, "failures", fails)
		wait = backoff(fails, s.opt.RegisterRetry, s.opt.RegisterRetryMax)
		if re != nil && re.retryAfter > wait && re.status != 423 {
			wait = re.retryAfter
		}
		if len(registrars) > 1 {
			idx = (idx + 1) % len(registrars) // the next registrar, at once
			if idx != 0 {
				wait = 0
			}
		}
		reg.set(func(st *RegistrationStatus) {
			st.State, st.Failures, st.LastError, st.NextAttempt = RegFailed, fails, err.Error(), time.Now().Add(wait)
			if re != nil {
				st.LastStatus = re.status
			}
			st.ExpiresAt = time.Time{}
		})
	}
}

// backoff is the wait after n consecutive failures: base doubled each time up
// to max, with ±20% jitter so many nodes do not retry in step.
func backoff(n int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// register sends one REGISTER (and its authenticated retry) and returns the
// expiry the registrar granted.
func (s *Server) sendRegister(ctx context.Context, reg *registration, target string, expires time.Duration) (time.Duration, error) {
	req, contact, err := s.registerRequest(reg, target, expires)
	if err != nil {
		return 0, &errRegister{err: err}
	}
	reg.set(func(st *RegistrationStatus) { st.AOR, st.Contact = req.To().Address.String(), contact })
	tctx, cancel := context.WithTimeout(withTrunk(ctx, reg.t), 2*gsip.Timer_B)
	defer cancel()
	res, err := s.cli.Do(tctx, req)
	for auth := 0; err == nil && (res.StatusCode == 401 || res.StatusCode == 407) && auth < 2; auth++ {
		if reg.t.Username == "" {
			break
		}
		req, err = s.authorize(reg, req, res)
		if err != nil {
			return 0, &errRegister{status: res.StatusCode, err: err}
		}
		res, err = s.cli.Do(tctx, req)
	}
	if err != nil {
		return 0, &errRegister{err: err}
	}
	if res.StatusCode >= 300 {
		re := &errRegister{status: res.StatusCode, err: errors.New(res.Reason)}
		if h := res.GetHeader("Retry-After"); h != nil {
			if n, e := strconv.Atoi(strings.Fields(h.Value() + " ")[0]); e == nil {
				re.retryAfter = time.Duration(n) * time.Second
			}
		}
		if h := res.GetHeader("Min-Expires"); res.StatusCode == 423 && h != nil {
			if n, e := strconv.Atoi(strings.TrimSpace(h.Value())); e == nil {
				re.retryAfter = time.Duration(n) * time.Second
			}
		}
		return 0, re
	}
	return grantedExpiry(res, contact, expires), nil
}

// grantedExpiry reads the expiry of our binding from a 200 to REGISTER: our
// Contact's expires parameter, else Expires, else what we asked for.
func grantedExpiry(res *gsip.Response, contact string, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		for _, v := range strings.Split(h.Value(), ",") {
			if !strings.Contains(v, contactKey(contact)) {
				continue
			}
			for _, p := range strings.Split(v, ";") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "expires") {
					if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil && n > 0 {
						return time.Duration(n) * time.Second
					}
				}
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// contactKey is the user@host:port part of our contact, to find it among the
// registrar's bindings.
func contactKey(contact string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(strings.Trim(contact, "<>"), "sips:"), "sip:")
	s, _, _ = strings.Cut(s, ";")
	return s
}

// advertiseForHost is our address towards a host: the public IPv6 address for an
// IPv6 one when we have it, else the public IP.
func (s *Server) advertiseForHost(host string) netip.Addr {
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().Is6() && s.opt.PublicIP6.IsValid() {
		return s.opt.PublicIP6
	}
	return s.opt.PublicIP
}

// registerRequest builds a REGISTER of our contact to target.
func (s *Server) registerRequest(reg *registration, target string, expires time.Duration) (*gsip.Request, string, error) {
	u, err := store.ParseTrunkURI(target)
	if err != nil {
		return nil, "", err
	}
	var ruri gsip.Uri
	scheme := "sip"
	if strings.HasPrefix(strings.ToLower(target), "sips:") {
		scheme = "sips"
	}
	ruri = gsip.Uri{Scheme: scheme, Host: u.Host, Port: u.Port}
	if strings.Contains(u.Host, ":") {
		ruri.Host = "[" + u.Host + "]"
	}
	if u.Transport != "udp" && scheme == "sip" {
		ruri.UriParams = gsip.NewParams()
		ruri.UriParams.Add("transport", u.Transport)
	}
	req := gsip.NewRequest(gsip.REGISTER, ruri)
	user := reg.t.RegisterUser()
	adv := s.advertiseForHost(u.Host)
	host := adv.String()
	if adv.Is6() {
		host = "[" + host + "]"
	}
	port := s.port
	if u.Transport == "tls" && s.tlsPort != 0 {
		port = s.tlsPort
	}
	via := &gsip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(u.Transport), Host: host, Port: port}
	via.Params = gsip.NewParams()
	via.Params.Add("branch", gsip.GenerateBranchN(16))
	via.Params.Add("rport", "")
	req.AppendHeader(via)
	aor := gsip.Uri{Scheme: scheme, User: user, Host: ruri.Host}
	from := &gsip.FromHeader{Address: aor, Params: gsip.NewParams()}
	from.Params.Add("tag", gsip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&gsip.ToHeader{Address: aor})
	cid := gsip.CallIDHeader(reg.callID)
	req.AppendHeader(&cid)
	reg.mu.Lock()
	reg.cseq++
	seq := reg.cseq
	reg.mu.Unlock()
	req.AppendHeader(&gsip.CSeqHeader{SeqNo: seq, MethodName: gsip.REGISTER})
	mf := gsip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	cu := gsip.Uri{Scheme: "sip", User: user, Host: host, Port: port}
	if u.Transport != "udp" {
		cu.UriParams = gsip.NewParams()
		cu.UriParams.Add("transport", u.Transport)
	}
	contact := "<" + cu.String() + ">"
	req.AppendHeader(gsip.NewHeader("Contact", fmt.Sprintf("%s;expires=%d", contact, int(expires/time.Second))))
	req.AppendHeader(gsip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	req.AppendHeader(gsip.NewHeader("Allow", allowMethods))
	req.AppendHeader(gsip.NewHeader("User-Agent", "CXCo"))
	req.SetTransport(strings.ToUpper(u.Transport))
	req.SetDestination(u.HostPort())
	s.fromListener(req, adv) // the authorized retry is its clone, Laddr included
	return req, contact, nil
}

// authorize answers a digest challenge: the same REGISTER, next CSeq, new
// branch, with Authorization (401) or Proxy-Authorization (407).
func (s *Server) authorize(reg *registration, req *gsip.Request, res *gsip.Response) (*gsip.Request, error) {
	hname, aname := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		hname, aname = "Proxy-Authenticate", "Proxy-Authorization"
	}
	h := res.GetHeader(hname)
	if h == nil {
		return nil, fmt.Errorf("%d without %s", res.StatusCode, hname)
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", hname, err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: req.Recipient.String(), Username: reg.t.Username,
		Password: reg.t.password, Count: 1})
	if err != nil {
		return nil, err
	}
	next := req.Clone()
	next.RemoveHeader("Authorization")
	next.RemoveHeader("Proxy-Authorization")
	next.AppendHeader(gsip.NewHeader(aname, cred.String()))
	reg.mu.Lock()
	reg.cseq++
	next.CSeq().SeqNo = reg.cseq
	reg.mu.Unlock()
	if via := next.Via(); via != nil {
		via.Params.Add("branch", gsip.GenerateBranchN(16))
	}
	return next, nil
}

// unregister removes our binding (Expires: 0) on the way out, briefly.
func (s *Server) unregister(reg *registration, target string) {
	if target == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := s.sendRegister(ctx, reg, target, 0); err != nil {
		s.log.Debug("un-REGISTER failed", "trunk", reg.t.Name, "err", err)
	}
}
