package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
	"github.com/cxco/gateway/store"
)

// call is one inbound call, from its INVITE to its end: the SIP dialog, which is
// the call's leg (callpath.Leg).
//
// Goroutines: the INVITE handler (sipgo's) sets the call up, sends the 200 and
// retransmits it until the ACK, then returns; from the 200 on the call's
// callpath.Call supervises it (run) and is the only one to end it: everything
// that can end the call asks cp.End, and the close path runs once.
type call struct {
	s     *Server
	log   *slog.Logger
	route *route
	trunk *trunk // the trunk the INVITE came from

	invite    *gsip.Request // the INVITE, cloned, with our To-tag
	tx        gsip.ServerTransaction
	id        string // dialog id
	callID    string
	ourTag    string
	source    string // where the INVITE came from, ip:port
	transport string
	advertise netip.Addr // our address for this call (its family)
	caller    string
	called    string // E.164, after the trunk's number rule
	dialled   string // as the trunk sent it

	local *sdp.Local
	neg   sdp.Negotiated

	mu           sync.Mutex
	remoteTarget gsip.Uri
	routeSet     []string
	remoteCSeq   uint32
	localCSeq    uint32
	acks         map[uint32]chan struct{} // CSeq of a 2xx waiting for its ACK
	reinvite     bool                     // a re-INVITE transaction is in progress
	lateOffer    bool                     // our 200 carried the offer; the ACK brings the answer
	reinviteLate uint32                   // CSeq of a re-INVITE we answered with an offer
	sessionExp   time.Time                // RFC 4028: when the session expires without a refresh
	sessionSE    time.Duration
	weRefresh    bool
	hold         bool
	holdSince    time.Time
	codec        string // negotiated, once media started

	stream     *media.Stream
	agent      callpath.Peer       // who the call was answered for: the agent or the echo line
	cp         *callpath.Call      // the call from its 200 on
	byeIn      atomic.Bool         // the caller hung up (no BYE of ours)
	rec        callpath.Record     // the conversation's record; nil for the echo line
	conv       *store.Conversation // as recorded at the INVITE
	start      time.Time           // INVITE received
	acked      chan struct{}
	ackOnce    sync.Once
	transferMu sync.Mutex // one transfer at a time
	xfer       *transferState
}

// dialogID is the dialog id of an in-dialog request (our tag is its To-tag).
func dialogID(callID, ourTag, theirTag string) string {
	return callID + "__" + ourTag + "__" + theirTag
}

// inDialogID is the dialog id of a request the far end sends in one of our dialogs
// (our tag is its To-tag).
func inDialogID(req *gsip.Request) (string, bool) {
	if req.CallID() == nil || req.To() == nil || req.From() == nil {
		return "", false
	}
	to, _ := req.To().Params.Get("tag")
	from, _ := req.From().Params.Get("tag")
	return dialogID(req.CallID().Value(), to, from), true
}

func (s *Server) lookup(req *gsip.Request) *call {
	id, ok := inDialogID(req)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

// onInvite handles an INVITE: in-dialog ones are re-INVITEs; new ones become calls.
func (s *Server) onInvite(req *gsip.Request, tx gsip.ServerTransaction) {
	if hasToTag(req) {
		if c := s.lookup(req); c != nil {
			c.onReinvite(req, tx)
			return
		}
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		s.rejected.add(tx)
		return
	}
	// 100 Trying at once: the trunk stops retransmitting.
	respond(tx, req, 100, "Trying")
	if s.draining.Load() || s.closed.Load() {
		s.reject(tx, req, &callpath.Refusal{Code: 503, Phrase: "Service Unavailable", Reason: callpath.Draining, RetryAfter: 30})
		return
	}
	tr := s.trunkOf(req)
	if tr == nil {
		s.reject(tx, req, callpath.Refuse(403, "Forbidden", callpath.UnknownTrunk, nil))
		return
	}
	if tr.auth != nil && !tr.auth.check(req, tx, s.obs) {
		s.rejected.add(tx) // a challenge (401/407) or a 403
		return
	}
	if n := s.setup.Add(1); n > int64(s.opt.MaxCalls) {
		s.setup.Add(-1)
		s.reject(tx, req, callpath.Unavailable(callpath.AtCapacity, nil))
		return
	}
	if !s.addCall() {
		s.setup.Add(-1)
		s.reject(tx, req, &callpath.Refusal{Code: 503, Phrase: "Service Unavailable", Reason: callpath.Draining, RetryAfter: 30})
		return
	}
	c := s.newCall(req, tx, tr)
	if !c.setupAndAnswer() {
		c.release()
	}
}

// reject answers an INVITE with a final error. The response says why, for the
// operator reading a trace and for the carrier's logs: a Reason header (RFC 3326:
// cause and our end reason) and a Warning with the words (RFC 3261 §20.43, code
// 399), besides Retry-After when the refusal is temporary.
func (s *Server) reject(tx gsip.ServerTransaction, req *gsip.Request, st *callpath.Refusal) {
	s.obs.Rejected(st.Code)
	var hdrs []gsip.Header
	if st.RetryAfter > 0 {
		hdrs = append(hdrs, gsip.NewHeader("Retry-After", fmt.Sprint(st.RetryAfter)))
	}
	if st.Reason != "" {
		hdrs = append(hdrs, gsip.NewHeader("Reason", fmt.Sprintf("SIP;cause=%d;text=%q", st.Code, st.Reason)))
		if text := refusalText(st.Reason); text != "" {
			hdrs = append(hdrs, gsip.NewHeader("Warning", fmt.Sprintf("399 cxco %q", text)))
		}
	}
	respond(tx, req, st.Code, st.Phrase, hdrs...)
	s.rejected.add(tx)
}

// refusalText says in words why a call was refused (the Warning header's text).
func refusalText(r callpath.Reason) string {
	switch r {
	case callpath.UnknownNumber:
		return "Unknown number: it is not in the gateway's number pool"
	case callpath.UnassignedNumber:
		return "The number is not assigned to a published agent"
	case callpath.AgentArchived:
		return "The number's agent is archived"
	case callpath.AgentPaused:
		return "The agent is paused"
	case callpath.AgentDraft:
		return "The agent is not published"
	case callpath.AgentNotProvisioned:
		return "The agent is not set up at its voice-AI provider"
	case callpath.CompanySuspended:
		return "The company is suspended"
	case callpath.AtCapacity:
		return "At capacity: too many calls (--max-calls)"
	case callpath.Draining:
		return "The gateway is draining for a restart"
	case callpath.StoreUnavailable:
		return "The data store is unavailable"
	case callpath.ProviderDown:
		return "The voice-AI provider is unavailable"
	case callpath.MediaUnavailable:
		return "No free RTP ports"
	case callpath.UnknownTrunk:
		return "The source belongs to no trunk"
	}
	return ""
}

func (s *Server) newCall(req *gsip.Request, tx gsip.ServerTransaction, tr *trunk) *call {
	inv := req.Clone()
	tag := gsip.GenerateTagN(16)
	inv.To().Params.Add("tag", tag)
	fromTag, _ := inv.From().Params.Get("tag")
	raw := dialled(req)
	if to := req.To(); to != nil && tr.Registration.Enabled && to.Address.User != "" &&
		strings.EqualFold(req.Recipient.User, tr.RegisterUser()) {
		// The carrier sent the call to our registered contact: the Request-URI
		// names our registration, To the number the caller dialled.
		raw = to.Address.User
	}
	c := &call{s: s, trunk: tr, invite: inv, tx: tx, callID: inv.CallID().Value(), ourTag: tag, source: req.Source(),
		transport: req.Transport(), caller: callerNumber(req, tr.Numbers), dialled: raw, called: tr.Numbers.Normalize(raw), start: time.Now(),
		acks: map[uint32]chan struct{}{}, acked: make(chan struct{}),
		remoteCSeq: inv.CSeq().SeqNo, localCSeq: 1}
	c.id = dialogID(c.callID, tag, fromTag)
	if ct := inv.Contact(); ct != nil {
		c.remoteTarget = ct.Address
	} else {
		c.remoteTarget = inv.From().Address
	}
	for _, rr := range inv.GetHeaders("Record-Route") {
		for _, v := range strings.Split(rr.Value(), ",") {
			if v = strings.TrimSpace(v); v != "" {
				c.routeSet = append(c.routeSet, v)
			}
		}
	}
	c.advertise = s.advertiseFor(req)
	c.log = s.log.With("call_id", s.trace.callID(c.callID), "sip_call_id", c.callID, "from", c.caller, "to", c.called, "trunk", tr.Name)
	if raw != c.called {
		c.log = c.log.With("dialled", raw)
	}
	s.trace.attach(c.callID, c.log, nil)
	return c
}

// advertiseFor picks our address for a call: the public IP of the INVITE's family,
// else the address the trunk sent the INVITE to.
func (s *Server) advertiseFor(req *gsip.Request) netip.Addr {
	src, _ := netip.ParseAddrPort(req.Source())
	v6 := src.Addr().Unmap().Is6()
	switch {
	case v6 && s.opt.PublicIP6.IsValid():
		return s.opt.PublicIP6
	case v6 == s.opt.PublicIP.Is6():
		return s.opt.PublicIP
	}
	if a, err := netip.ParseAddr(strings.Trim(req.Recipient.Host, "[]")); err == nil && a.Is6() == v6 {
		return a
	}
	if v6 {
		return netip.IPv6Loopback()
	}
	return s.opt.PublicIP
}

// release gives back the capacity a call held once it is fully over.
func (c *call) release() {
	c.s.trace.ended(c.callID)
	c.s.setup.Add(-1)
	c.s.callWG.Done()
}

// setupAndAnswer runs the call up to its 200 OK and ACK. It returns false when the
// call never got going (rejected or cancelled); the supervisor owns it otherwise.
func (c *call) setupAndAnswer() bool {
	s := c.s
	s.obs.CallStarted()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	cancelled := errors.New("cancelled by the caller")
	if !c.tx.OnCancel(func(*gsip.Request) { cancel(cancelled) }) {
		return false // the transaction is already gone
	}
	c.log.Info("call received", "source", c.source, "transport", c.transport)

	// The number first: an unknown number is 404 whatever the offer says.
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	rt, st := s.resolve(rctx, c.called)
	rcancel()
	if st != nil {
		c.log.Info("call refused", "status", st.Code, "reason", st.Reason)
		s.reject(c.tx, c.invite, st)
		return false
	}
	// Then the offer: a call we cannot carry is refused before anything is recorded.
	offer, err := sdpBody(c.invite)
	if err != nil {
		s.reject(c.tx, c.invite, callpath.Refuse(415, "Unsupported Media Type", callpath.BadSDP, err))
		return false
	}
	c.local = sdp.NewLocal(c.advertise, 0)
	c.local.Policy = mediaPolicy(c.trunk.Trunk)
	if offer != nil {
		sess, err := sdp.Parse(offer)
		if err != nil {
			c.log.Info("call refused: malformed SDP", "err", err)
			s.reject(c.tx, c.invite, callpath.Refuse(400, "Bad Request (Malformed SDP)", callpath.BadSDP, err))
			return false
		}
		policy := c.local.CurrentPolicy()
		if c.neg, err = sdp.NegotiateWith(sess, policy); err == nil {
			err = available(c.neg)
		}
		if err != nil {
			c.log.Info("call refused: offer not acceptable", "err", err, "srtp_policy", policy.SRTP)
			s.obs.Rejected(488)
			_ = c.tx.Respond(notAcceptable(c.invite, err, policy))
			return false
		}
	}
	if se, reject := c.sessionTimerOffer(); reject != nil {
		_ = c.tx.Respond(reject)
		s.obs.Rejected(reject.StatusCode)
		return false
	} else {
		c.sessionSE = se
	}

	c.route = rt
	if rt.agent != nil {
		c.log = c.log.With("company_id", rt.company.ID, "agent_id", rt.agent.ID)
		if err := c.recordStart(ctx); err != nil {
			c.log.Warn("call refused: cannot record the conversation", "err", err)
			s.reject(c.tx, c.invite, callpath.Unavailable(callpath.StoreUnavailable, nil))
			return false
		}
	}
	c.provisional(180, "Ringing")

	// Media and the far side, before the answer.
	src, _ := netip.ParseAddrPort(c.source)
	stream, err := media.NewStream(s.opt.Ports, s.mediaIP, media.Options{Logger: c.log, Wheel: s.opt.Wheel,
		JitterMin: s.opt.JitterMin, JitterMax: s.opt.JitterMax, Concealment: s.opt.Concealment,
		Sources: s.rtpSources(c.trunk, src.Addr().Unmap())})
	if err != nil {
		c.log.Warn("call refused: no RTP ports", "err", err)
		c.failSetup(callpath.Unavailable(callpath.MediaUnavailable, err))
		return false
	}
	c.stream = stream
	c.local.Port = stream.LocalPort()
	agent, err := c.connectPeer(ctx)
	if err != nil {
		stream.Close()
		if context.Cause(ctx) == cancelled {
			c.log.Info("call cancelled by the caller before answer")
			c.recordEnd(callpath.End{Reason: callpath.Cancelled, Outcome: callpath.OutcomeCancelled}, media.Stats{})
			return false
		}
		var st *callpath.Refusal
		if !errors.As(err, &st) {
			st = callpath.Unavailable(callpath.ProviderDown, err)
		}
		c.log.Warn("call refused: far side not ready", "status", st.Code, "reason", st.Reason, "err", err)
		c.failSetup(st)
		return false
	}
	c.agent = agent
	if context.Cause(ctx) == cancelled {
		agent.Close(callpath.Cancelled)
		stream.Close()
		c.log.Info("call cancelled by the caller before answer")
		c.recordEnd(callpath.End{Reason: callpath.Cancelled, Outcome: callpath.OutcomeCancelled}, media.Stats{})
		return false
	}
	return c.answer(ctx, offer, cancelled)
}

// srtpName is the negotiated SRTP suite for logs ("" for plain RTP); never
// the keys.
func srtpName(n sdp.Negotiated) string {
	if n.SRTP == nil {
		return ""
	}
	return n.SRTP.Suite
}

// connectPeer opens the far side: the echo line here, the provider through the connector.
func (c *call) connectPeer(ctx context.Context) (callpath.Peer, error) {
	if c.route.echo {
		return newEchoPeer(), nil
	}
	if c.s.opt.Connector == nil {
		return nil, errors.New("no connector for agent calls")
	}
	info := &callpath.Info{ConversationID: c.conv.ID, Company: c.route.company, Agent: c.route.agent,
		Config: store.ParseAgentConfig(c.route.agent.Config), Caller: c.caller, Called: c.called, SIPCallID: c.callID,
		Record: c.rec, Log: c.log}
	return c.s.opt.Connector.Connect(ctx, info)
}

// failSetup refuses the INVITE and records the conversation as failed.
func (c *call) failSetup(st *callpath.Refusal) {
	c.s.reject(c.tx, c.invite, st)
	c.recordEnd(callpath.Fail(st.Reason), media.Stats{})
}

// provisional sends a 1xx with our To-tag and Contact (it opens the early dialog).
func (c *call) provisional(code int, reason string) {
	res := gsip.NewResponseFromRequest(c.invite, code, reason, nil)
	res.AppendHeader(c.contact())
	_ = c.tx.Respond(res)
}

// host is our address for this call as the host of a URI (IPv6 in brackets).
func (c *call) host() string {
	if c.advertise.Is6() {
		return "[" + c.advertise.String() + "]"
	}
	return c.advertise.String()
}

// contact is our Contact for this call: at the port of the transport the call
// came over, sips: when the INVITE's Request-URI was (RFC 3261 §8.1.1.8).
func (c *call) contact() *gsip.ContactHeader {
	u := gsip.Uri{Scheme: "sip", User: "cxco", Host: c.host(), Port: c.localPort()}
	switch {
	case strings.EqualFold(c.invite.Recipient.Scheme, "sips"):
		u.Scheme = "sips"
	case !strings.EqualFold(c.transport, "udp"):
		u.UriParams = gsip.NewParams()
		u.UriParams.Add("transport", strings.ToLower(c.transport))
	}
	return &gsip.ContactHeader{Address: u}
}

// localPort is our SIP port on the call's transport.
func (c *call) localPort() int {
	if strings.EqualFold(c.transport, "tls") && c.s.tlsPort != 0 {
		return c.s.tlsPort
	}
	return c.s.port
}

// answer sends the 200 OK with our SDP and hands the call to its supervisor.
func (c *call) answer(ctx context.Context, offer []byte, cancelled error) bool {
	maxDur := time.Hour
	if c.route.agent != nil {
		maxDur = time.Duration(store.ParseAgentConfig(c.route.agent.Config).MaxCallDuration) * time.Second
	}
	c.cp = callpath.New(callpath.Options{Leg: c, Peer: c.agent, Log: c.log, MaxDuration: maxDur, Shutdown: c.s.killAll,
		Transfer: c.Transfer, PeerFirst: func(r callpath.Reason) bool { return r == callpath.NoACK }})
	var body []byte
	if offer != nil {
		var err error
		body, c.neg, err = c.local.Answer(offer)
		if err != nil { // negotiated above already
			c.agent.Close(callpath.Internal)
			c.stream.Close()
			c.failSetup(callpath.Refuse(488, "Not Acceptable Here", callpath.BadSDP, err))
			return false
		}
		c.local.Fix(c.neg)
		if e, ok := c.agent.(*echoPeer); ok {
			e.setFormat(c.neg.Codec)
		}
	} else {
		c.lateOffer = true
		body = c.local.Offer(sdp.SendRecv)
	}
	res := gsip.NewSDPResponseFromRequest(c.invite, body)
	res.AppendHeader(c.contact())
	res.AppendHeader(gsip.NewHeader("Allow", allowMethods))
	res.AppendHeader(gsip.NewHeader("Supported", strings.Join(supportedExt, ", ")))
	c.addSessionTimer(res)

	c.s.mu.Lock()
	c.s.calls[c.id] = c
	ack := make(chan struct{}, 1)
	c.acks[c.invite.CSeq().SeqNo] = ack
	c.s.mu.Unlock()

	now := time.Now()
	c.cp.Answered(now)
	if !c.lateOffer {
		c.startMediaAndPeer()
	}
	if err := c.tx.Respond(res); err != nil {
		c.s.mu.Lock()
		delete(c.s.calls, c.id)
		c.s.mu.Unlock()
		c.agent.Close(callpath.Cancelled)
		c.stream.Close()
		if errors.Is(err, gsip.ErrTransactionCanceled) || context.Cause(ctx) == cancelled {
			c.log.Info("call cancelled by the caller as it was answered")
			c.recordEnd(callpath.End{Reason: callpath.Cancelled, Outcome: callpath.OutcomeCancelled}, media.Stats{})
		} else {
			c.log.Warn("could not send the 200 OK", "err", err)
			c.recordEnd(callpath.Fail(callpath.Internal), media.Stats{})
		}
		return false
	}
	c.s.obs.CallAnswered(now.Sub(c.start))
	c.s.kickLive()
	c.log.Info("call answered", "setup_ms", now.Sub(c.start).Milliseconds(), "codec", c.neg.Codec.Name, "srtp", srtpName(c.neg), "late_offer", c.lateOffer)
	go c.run()
	// RFC 3261 §13.3.1.4: retransmit the 2xx until the ACK (T1, doubling to T2), for 64*T1.
	if !c.retransmit2xx(c.tx, res, ack) {
		c.cp.End(callpath.Fail(callpath.NoACK))
	}
	return true
}

// retransmit2xx resends a 2xx until its ACK arrives or the call ends; false when
// 64*T1 (Timer H's length, RFC 3261 §13.3.1.4) passed without the ACK.
func (c *call) retransmit2xx(tx gsip.ServerTransaction, res *gsip.Response, ack <-chan struct{}) bool {
	interval := gsip.T1
	deadline := time.NewTimer(gsip.Timer_H)
	defer deadline.Stop()
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ack:
			return true
		case <-c.cp.Done():
			return true
		case <-deadline.C:
			c.log.Warn("no ACK for our 2xx", "cseq", res.CSeq().SeqNo)
			return false
		case <-t.C:
			if err := tx.Respond(res); err != nil && !errors.Is(err, gsip.ErrTransactionTerminated) {
				c.log.Debug("2xx retransmission failed", "err", err)
			}
			interval = min(2*interval, gsip.T2)
			t.Reset(interval)
		}
	}
}

// startMediaAndPeer starts RTP with the negotiated parameters and then the peer
// (which may play audio at once).
func (c *call) startMediaAndPeer() {
	c.mu.Lock()
	c.codec = c.neg.Codec.Name
	c.mu.Unlock()
	c.warnMediaSource(c.neg.Remote)
	if c.neg.Hold {
		c.setHold(true)
	}
	if err := c.cp.Start(c.neg); err != nil {
		c.log.Warn("media or far side failed to start", "err", err)
		c.cp.End(callpath.Fail(callpath.Internal))
	}
}

// AnsweredAt is when our 200 went out.
func (c *call) AnsweredAt() time.Time { return c.cp.AnsweredAt() }

// Stream implements callpath.Leg.
func (c *call) Stream() *media.Stream { return c.stream }

// Check implements callpath.Leg: RTP inactivity and RFC 4028 session timers.
func (c *call) Check(now time.Time) (callpath.End, bool) {
	if c.rtpTimedOut(now) {
		return callpath.End{Reason: callpath.RTPTimeout}, true
	}
	if end, refresh := c.sessionTimerDue(now); end {
		return callpath.End{Reason: callpath.SessionExpired}, true
	} else if refresh {
		c.cp.Go(c.refreshSession)
	}
	return callpath.End{}, false
}

// Hangup implements callpath.Leg: our BYE, unless the caller hung up.
func (c *call) Hangup(ctx context.Context, _ callpath.End) {
	if !c.byeIn.Load() {
		c.sendBye(ctx)
	}
}
