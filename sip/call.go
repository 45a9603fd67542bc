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

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
	"github.com/cxco/gateway/store"
)

// call is one inbound call, from its INVITE to its end.
//
// Goroutines: the INVITE handler (sipgo's) sets the call up, sends the 200 and
// retransmits it until the ACK, then returns; the supervisor (run) owns the call
// from the 200 on and is the only one to end it. Everything that can end a call
// sends on endCh; the supervisor's close path runs once.
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
	peer       Peer // set during setup; after the answer, read it with currentPeer (a bridged transfer swaps it)
	peerNow    atomic.Pointer[peerBox]
	peerSwap   chan struct{}
	conv       *store.Conversation
	start      time.Time // INVITE received
	answeredAt atomic.Pointer[time.Time]
	endedAt    time.Time // set by the supervisor when the call ends (before done closes)
	acked      chan struct{}
	ackOnce    sync.Once
	endCh      chan endRequest
	done       chan struct{}
	transferMu sync.Mutex // one transfer at a time
	xfer       *transferState
}

type endRequest struct {
	at      time.Time // when the call ended: the BYE, the timer, the far side's end (stamped by end)
	reason  string
	failed  bool
	sendBye bool   // we end the call: send BYE
	status  string // a final status to record instead of completed/failed (transferred)
	referTo string
	referS  int
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
		return
	}
	// 100 Trying at once: the trunk stops retransmitting.
	respond(tx, req, 100, "Trying")
	if s.draining.Load() || s.closed.Load() {
		s.reject(tx, req, &Status{Code: 503, Reason: "Service Unavailable", EndReason: "draining", RetryAfter: 30})
		return
	}
	tr := s.trunkOf(req)
	if tr == nil {
		s.reject(tx, req, &Status{Code: 403, Reason: "Forbidden", EndReason: "unknown_trunk"})
		return
	}
	if tr.auth != nil && !tr.auth.check(req, tx, s.obs) {
		return
	}
	if n := s.setup.Add(1); n > int64(s.opt.MaxCalls) {
		s.setup.Add(-1)
		s.reject(tx, req, &Status{Code: 503, Reason: "Service Unavailable", EndReason: "at_capacity", RetryAfter: 5})
		return
	}
	s.callWG.Add(1)
	c := s.newCall(req, tx, tr)
	if !c.setupAndAnswer() {
		c.release()
	}
}

// reject answers an INVITE with a final error. The response says why, for the
// operator reading a trace and for the carrier's logs: a Reason header (RFC 3326:
// cause and our end reason) and a Warning with the words (RFC 3261 §20.43, code
// 399), besides Retry-After when the refusal is temporary.
func (s *Server) reject(tx gsip.ServerTransaction, req *gsip.Request, st *Status) {
	s.obs.Rejected(st.Code)
	var hdrs []gsip.Header
	if st.RetryAfter > 0 {
		hdrs = append(hdrs, gsip.NewHeader("Retry-After", fmt.Sprint(st.RetryAfter)))
	}
	if st.EndReason != "" {
		hdrs = append(hdrs, gsip.NewHeader("Reason", fmt.Sprintf("SIP;cause=%d;text=%q", st.Code, st.EndReason)))
		if text := refusalText(st.EndReason); text != "" {
			hdrs = append(hdrs, gsip.NewHeader("Warning", fmt.Sprintf("399 cxco %q", text)))
		}
	}
	respond(tx, req, st.Code, st.Reason, hdrs...)
}

// refusalText says in words why a call was refused (the Warning header's text).
func refusalText(endReason string) string {
	switch endReason {
	case "unknown_number":
		return "Unknown number: it is not in the gateway's number pool"
	case "unassigned_number":
		return "The number is not assigned to a published agent"
	case "agent_archived":
		return "The number's agent is archived"
	case "agent_paused":
		return "The agent is paused"
	case "agent_draft":
		return "The agent is not published"
	case "company_suspended":
		return "The company is suspended"
	case "at_capacity":
		return "At capacity: too many calls (--max-calls)"
	case "draining":
		return "The gateway is draining for a restart"
	case "store_unavailable":
		return "The data store is unavailable"
	case EndProviderDown:
		return "The voice-AI provider is unavailable"
	case EndMediaUnavailable:
		return "No free RTP ports"
	case "unknown_trunk":
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
		acks: map[uint32]chan struct{}{}, acked: make(chan struct{}), endCh: make(chan endRequest, 1), done: make(chan struct{}),
		peerSwap:   make(chan struct{}, 1),
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
		c.log.Info("call refused", "status", st.Code, "reason", st.EndReason)
		s.reject(c.tx, c.invite, st)
		return false
	}
	// Then the offer: a call we cannot carry is refused before anything is recorded.
	offer, err := sdpBody(c.invite)
	if err != nil {
		s.reject(c.tx, c.invite, Reject(415, "Unsupported Media Type", "bad_sdp", err))
		return false
	}
	c.local = sdp.NewLocal(c.advertise, 0)
	c.local.Policy = mediaPolicy(c.trunk.Trunk)
	if offer != nil {
		sess, err := sdp.Parse(offer)
		if err != nil {
			c.log.Info("call refused: malformed SDP", "err", err)
			s.reject(c.tx, c.invite, Reject(400, "Bad Request (Malformed SDP)", "bad_sdp", err))
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
			s.reject(c.tx, c.invite, &Status{Code: 503, Reason: "Service Unavailable", EndReason: "store_unavailable", RetryAfter: 5})
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
		c.failSetup(&Status{Code: 503, Reason: "Service Unavailable", EndReason: EndMediaUnavailable, RetryAfter: 5, Err: err})
		return false
	}
	c.stream = stream
	c.local.Port = stream.LocalPort()
	peer, err := c.connectPeer(ctx)
	if err != nil {
		stream.Close()
		if context.Cause(ctx) == cancelled {
			c.log.Info("call cancelled by the caller before answer")
			c.recordEnd(endRequest{reason: EndCancelled, status: store.ConvCancelled}, media.Stats{})
			return false
		}
		var st *Status
		if !errors.As(err, &st) {
			st = &Status{Code: 503, Reason: "Service Unavailable", EndReason: EndProviderDown, RetryAfter: 5, Err: err}
		}
		c.log.Warn("call refused: far side not ready", "status", st.Code, "reason", st.EndReason, "err", err)
		c.failSetup(st)
		return false
	}
	c.peer = peer
	if context.Cause(ctx) == cancelled {
		peer.Close(EndCancelled)
		stream.Close()
		c.log.Info("call cancelled by the caller before answer")
		c.recordEnd(endRequest{reason: EndCancelled, status: store.ConvCancelled}, media.Stats{})
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
func (c *call) connectPeer(ctx context.Context) (Peer, error) {
	if c.route.echo {
		return newEchoPeer(), nil
	}
	if c.s.opt.Connector == nil {
		return nil, errors.New("no connector for agent calls")
	}
	info := &CallInfo{ConversationID: c.conv.ID, Company: c.route.company, Agent: c.route.agent,
		Caller: c.caller, Called: c.called, SIPCallID: c.callID, Log: c.log}
	return c.s.opt.Connector.Connect(ctx, info)
}

// failSetup refuses the INVITE and records the conversation as failed.
func (c *call) failSetup(st *Status) {
	c.s.reject(c.tx, c.invite, st)
	c.recordEnd(endRequest{reason: st.EndReason, failed: true}, media.Stats{})
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
	var body []byte
	if offer != nil {
		var err error
		body, c.neg, err = c.local.Answer(offer)
		if err != nil { // negotiated above already
			c.peer.Close(EndInternal)
			c.stream.Close()
			c.failSetup(Reject(488, "Not Acceptable Here", "bad_sdp", err))
			return false
		}
		c.local.Fix(c.neg)
		if e, ok := c.peer.(*echoPeer); ok {
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
	c.answeredAt.Store(&now)
	if !c.lateOffer {
		c.startMediaAndPeer()
	}
	if err := c.tx.Respond(res); err != nil {
		c.s.mu.Lock()
		delete(c.s.calls, c.id)
		c.s.mu.Unlock()
		c.peer.Close(EndCancelled)
		c.stream.Close()
		if errors.Is(err, gsip.ErrTransactionCanceled) || context.Cause(ctx) == cancelled {
			c.log.Info("call cancelled by the caller as it was answered")
			c.recordEnd(endRequest{reason: EndCancelled, status: store.ConvCancelled}, media.Stats{})
		} else {
			c.log.Warn("could not send the 200 OK", "err", err)
			c.recordEnd(endRequest{reason: EndInternal, failed: true}, media.Stats{})
		}
		return false
	}
	c.s.obs.CallAnswered(now.Sub(c.start))
	c.s.kickLive()
	c.log.Info("call answered", "setup_ms", now.Sub(c.start).Milliseconds(), "codec", c.neg.Codec.Name, "srtp", srtpName(c.neg), "late_offer", c.lateOffer)
	go c.run()
	// RFC 3261 §13.3.1.4: retransmit the 2xx until the ACK (T1, doubling to T2), for 64*T1.
	if !c.retransmit2xx(c.tx, res, ack) {
		c.end(endRequest{reason: EndNoACK, failed: true, sendBye: true})
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
		case <-c.done:
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
// (which may play audio at once). Caller audio can reach the peer's OnAudio just
// before its Start.
func (c *call) startMediaAndPeer() {
	c.peerNow.Store(&peerBox{c.peer})
	c.mu.Lock()
	c.codec = c.neg.Codec.Name
	c.mu.Unlock()
	c.warnMediaSource(c.neg.Remote)
	if err := c.stream.Start(c.neg, media.Consumer{Format: c.peer.Format(), Sink: c.onAudio, OnDigit: c.onDigit}); err != nil {
		c.log.Error("media start failed", "err", err)
		c.end(endRequest{reason: EndInternal, failed: true, sendBye: true})
		return
	}
	if c.neg.Hold {
		c.setHold(true)
	}
	if err := c.peer.Start(c); err != nil {
		c.log.Warn("far side failed to start", "err", err)
		c.end(endRequest{reason: EndProviderError, failed: true, sendBye: true})
	}
}

type peerBox struct{ Peer }

// currentPeer is who the caller talks to now: the agent, or the human a bridged
// transfer connected.
func (c *call) currentPeer() Peer {
	if b := c.peerNow.Load(); b != nil {
		return b.Peer
	}
	return c.peer
}

// swapPeer connects the caller to another far side and tells the supervisor.
func (c *call) swapPeer(p Peer) {
	c.peerNow.Store(&peerBox{p})
	c.s.kickLive()
	select {
	case c.peerSwap <- struct{}{}:
	default:
	}
}

func (c *call) onAudio(f media.Frame) { c.currentPeer().OnAudio(f) }
func (c *call) onDigit(d media.Digit) { c.currentPeer().OnDigit(d) }

// AnsweredAt implements Call.
func (c *call) AnsweredAt() time.Time {
	if t := c.answeredAt.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// Play, Flush and Drained implement Call over the media stream.
func (c *call) Play(audio []byte) error  { return c.stream.Play(audio) }
func (c *call) Flush() int               { return c.stream.Flush() }
func (c *call) Drained() <-chan struct{} { return c.stream.Drained() }

// Hangup implements Call: the far side ends the call.
func (c *call) Hangup(reason string) { c.end(endRequest{reason: reason, sendBye: true}) }

// end asks the supervisor to end the call; the first request wins. The end time is
// taken now, before anyone waits on anything: it is what the call is billed to.
func (c *call) end(e endRequest) {
	if e.at.IsZero() {
		e.at = time.Now()
	}
	select {
	case c.endCh <- e:
	default:
	}
}
