package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/amd"
	"github.com/cxco/gateway/store"
)

// Outbound calls the API places: the agent calls a number through the trunk.
// The conversation is recorded queued at once; the INVITE goes out (dial), the
// provider session opens while the callee's phone rings, a 180/183 makes the
// conversation ringing, the 200 OK's arrival is its answered_at, and from the
// answer the call runs on the same supervisor (callpath.Call) as an inbound
// one, the callee's dialog being its leg. A call never answered ends with its
// SIP outcome (callpath.DialEnd): busy, no_answer, rejected or failed, with the
// final status.

// OutboundCall is a call to place.
type OutboundCall struct {
	Company *store.Company
	Agent   *store.Agent
	// From is the number we call from (one of the company's, E.164): the From
	// and P-Asserted-Identity. To is the number called (E.164).
	From, To string
	// TrunkID is the trunk the From number belongs to (store.PhoneNumber's
	// TrunkID); 0: the default trunk if it has a URI, else the first with one.
	TrunkID          int64
	DynamicVariables map[string]any
	// HideCallerID withholds the From number from the callee: an anonymous
	// From and Privacy: id, the number still in P-Asserted-Identity for the
	// trunk's network (RFC 3323, RFC 3325).
	HideCallerID bool
	// RingTimeout is how long the callee's phone may ring before we CANCEL
	// (default 30 s).
	RingTimeout time.Duration
	// MachineDetection is callpath.AMDOff (or ""), AMDDetect, AMDHangup or
	// AMDLeaveMessage; VoicemailMessage is what leave_message says to a
	// machine ({{variables}} filled from DynamicVariables and ours).
	// OnMachineDetection, when set, is told each verdict (a late beep revises
	// a human one).
	MachineDetection   string
	OnMachineDetection func(amd.Result)
	// Pace, when set, is waited for right before the INVITE is sent (a
	// batch's calls per second, held on the wire); its error fails the call.
	Pace             func(context.Context) error
	VoicemailMessage string
	// Done, when set, is called once the call is over and recorded, with how
	// it ended (AnsweredAt zero: never answered).
	Done func(callpath.End)
}

// Outbound call errors (the API answers 503).
var (
	ErrNoTrunk    = errors.New("no trunk to call through: set --trunk-uri, or a URI on a stored trunk")
	ErrNotServing = errors.New("the gateway is draining or at capacity: it places no new calls")
)

// outCall is one outbound call under way.
type outCall struct {
	s      *Server
	conv   int64
	cancel context.CancelCauseFunc

	// For the live view (liveView): who calls whom, from when, and once
	// answered its leg and codec.
	company   *store.Company
	agent     *store.Agent
	from, to  string
	start     time.Time
	transport string
	provider  string

	mu       sync.Mutex
	cp       *callpath.Call
	pend     *callpath.End // an end asked for before the call was answered
	leg      *outLeg
	codec    string
	answered time.Time
}

// liveView is the outbound call as the live view shows it: ringing until it
// is answered, then talking.
func (o *outCall) liveView(node string, now time.Time, prev media.Stats) (store.LiveCall, media.Stats) {
	o.mu.Lock()
	leg, codec, answered := o.leg, o.codec, o.answered
	o.mu.Unlock()
	lc := store.LiveCall{ConversationID: o.conv, CompanyID: o.company.ID, CompanyName: o.company.Name, AgentID: o.agent.ID,
		AgentName: o.agent.Name, Node: node, Caller: o.from, Called: o.to, Direction: store.Outbound, State: store.LiveRinging,
		StartedAt: o.start.UTC(), Codec: codec, Transport: o.transport, Provider: o.provider, UpdatedAt: now.UTC()}
	if leg == nil {
		return lc, media.Stats{}
	}
	at := answered.UTC()
	lc.State, lc.AnsweredAt = store.LiveTalking, &at
	st := leg.stream.Stats()
	lc.Quality = liveQuality(st, prev)
	return lc, st
}

var errAPIHangup = errors.New("hung up from the API")

// end ends the call: before the answer the INVITE is cancelled, after it the
// supervisor ends the call.
func (o *outCall) end(e callpath.End) {
	o.mu.Lock()
	cp := o.cp
	if cp == nil && o.pend == nil {
		o.pend = &e
	}
	o.mu.Unlock()
	if cp != nil {
		cp.End(e)
		return
	}
	if e.Reason == callpath.APIHangup {
		o.cancel(errAPIHangup)
	}
}

// outboundTrunk is the trunk an outbound call goes through: the one its From
// number belongs to (id), which must have a URI — a number is not sent out
// through another carrier, which would present a caller ID it does not
// know —; for a number of no trunk (0), the default trunk when it has a URI
// (--trunk-uri), else the first stored trunk with one.
func (s *Server) outboundTrunk(id int64) (*trunk, error) {
	for _, t := range s.trunks().all {
		switch {
		case id != 0 && t.ID == id && !t.hasURI:
			return nil, fmt.Errorf("%w: the from number's trunk %q has no uri", ErrNoTrunk, t.Name)
		case id != 0 && t.ID == id, id == 0 && t.hasURI:
			return t, nil
		}
	}
	if id != 0 {
		return nil, fmt.Errorf("%w: the from number's trunk %d is not known to this node yet", ErrNoTrunk, id)
	}
	return nil, ErrNoTrunk
}

// PlaceCall records an outbound call (queued) and places it; it returns the
// conversation at once and the call goes on by itself. It fails when the
// gateway cannot place calls now (ErrNotServing, ErrNoTrunk) or the
// conversation cannot be recorded.
func (s *Server) PlaceCall(ctx context.Context, oc OutboundCall) (*store.Conversation, error) {
	if s.draining.Load() || s.closed.Load() {
		return nil, ErrNotServing
	}
	if s.opt.Calls == nil || s.opt.Connector == nil {
		return nil, errors.New("this gateway has no store or provider for agent calls")
	}
	tr, err := s.outboundTrunk(oc.TrunkID)
	if err != nil {
		return nil, err
	}
	if n := s.setup.Add(1); n > int64(s.opt.MaxCalls) {
		s.setup.Add(-1)
		return nil, ErrNotServing
	}
	if !s.addCall() {
		s.setup.Add(-1)
		return nil, ErrNotServing
	}
	if oc.RingTimeout <= 0 {
		oc.RingTimeout = 30 * time.Second
	}
	advertise := s.opt.PublicIP
	if a, err := netip.ParseAddr(strings.Trim(tr.uri.Host, "[]")); err == nil && a.Is6() && s.opt.PublicIP6.IsValid() {
		advertise = s.opt.PublicIP6
	}
	callID := gsip.GenerateTagN(24) + "@" + advertise.String()
	start := time.Now()
	meta := map[string]any{"sip": map[string]any{"trunk": tr.Name, "trunk_id": tr.ID, "transport": tr.uri.Transport}}
	rec, err := s.opt.Calls.Started(ctx, callpath.Start{Company: oc.Company, Agent: oc.Agent, Caller: oc.From, Called: oc.To,
		SIPCallID: callID, StartedAt: start, Metadata: meta, Outbound: true})
	if err != nil {
		s.setup.Add(-1)
		s.callWG.Done()
		return nil, err
	}
	conv := rec.Conversation()
	octx, cancel := context.WithCancelCause(context.Background())
	o := &outCall{s: s, conv: conv.ID, cancel: cancel, company: oc.Company, agent: oc.Agent, from: oc.From, to: oc.To,
		start: start, transport: strings.ToUpper(tr.uri.Transport), provider: conv.Source}
	s.mu.Lock()
	s.outbound[conv.ID] = o
	s.mu.Unlock()
	log := s.log.With("conversation_id", conv.ID, "company_id", oc.Company.ID, "agent_id", oc.Agent.ID, "direction", "outbound",
		"from", oc.From, "to", oc.To, "sip_call_id", callID, "trunk", tr.Name)
	s.trace.begin(callID, log, conv) // its SIP ladder, kept with the conversation
	go s.runOutbound(octx, o, oc, tr, advertise, callID, start, rec, log)
	s.kickLive()
	return conv, nil
}

// runOutbound places the call and, once it is answered, supervises it; it
// records the end either way.
func (s *Server) runOutbound(ctx context.Context, o *outCall, oc OutboundCall, tr *trunk, advertise netip.Addr, callID string, start time.Time,
	rec callpath.Record, log *slog.Logger) {
	var bg sync.WaitGroup // the record's writes before the answer
	final := callpath.Fail(callpath.Internal)
	defer func() {
		o.cancel(nil)
		bg.Wait()
		s.mu.Lock()
		delete(s.outbound, o.conv)
		s.mu.Unlock()
		s.trace.ended(callID)
		s.kickLive()
		s.setup.Add(-1)
		s.callWG.Done()
		if oc.Done != nil {
			oc.Done(final)
		}
	}()
	go func() { // shutdown cancels a call still ringing
		select {
		case <-s.killAll:
			o.cancel(errShutdown)
		case <-ctx.Done():
		}
	}()
	log.Info("outbound call placed", "ring_timeout_s", oc.RingTimeout.Seconds())

	// The agent's session opens while the phone rings, so it speaks as soon as
	// someone answers.
	cfg := store.ParseAgentConfig(oc.Agent.Config)
	type connected struct {
		peer callpath.Peer
		err  error
	}
	peerCh := make(chan connected, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		info := &callpath.Info{ConversationID: o.conv, Company: oc.Company, Agent: oc.Agent, Config: cfg, Caller: oc.From,
			Called: oc.To, SIPCallID: callID, Record: rec, Log: log, Direction: store.Outbound, DynamicVariables: oc.DynamicVariables}
		p, err := s.opt.Connector.Connect(cctx, info)
		peerCh <- connected{p, err}
	}()
	// leave_message: the voicemail message is said by a session of its own,
	// opened at the machine verdict with the message as all the agent says.
	dialMessage := func(ctx context.Context) (callpath.Peer, error) {
		mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		info := &callpath.Info{ConversationID: o.conv, Company: oc.Company, Agent: oc.Agent, Config: cfg, Caller: oc.From,
			Called: oc.To, SIPCallID: callID, Record: rec, Log: log.With("voicemail", true), Direction: store.Outbound,
			DynamicVariables: oc.DynamicVariables, Message: oc.VoicemailMessage}
		return s.opt.Connector.Connect(mctx, info)
	}
	closePeer := func(r callpath.Reason) {
		if c := <-peerCh; c.err == nil {
			c.peer.Close(r)
		}
	}

	rctx, rcancel := context.WithTimeout(ctx, oc.RingTimeout)
	defer rcancel()
	var ringOnce sync.Once
	leg, neg, err := s.dial(rctx, dialOptions{trunk: tr, target: oc.To, advertise: advertise, fromUser: oc.From, assertID: true, hideID: oc.HideCallerID,
		callID: callID, log: log, pace: oc.Pace, onBye: func() { o.end(callpath.End{Reason: callpath.CalleeHangup}) },
		onResponse: func(res *gsip.Response, _ time.Time) {
			if res.StatusCode != 180 && res.StatusCode != 183 {
				return
			}
			ringOnce.Do(func() {
				log.Info("outbound call ringing", "status", res.StatusCode)
				if p, ok := rec.(callpath.Progress); ok {
					bg.Add(1)
					go func() {
						defer bg.Done()
						if err := p.Ringing(context.Background()); err != nil {
							log.Warn("could not record the call ringing", "err", err)
						}
					}()
				}
			})
		}})
	if err != nil {
		var e callpath.End
		var de *dialError
		switch {
		case context.Cause(ctx) == errAPIHangup:
			e = callpath.End{Reason: callpath.APIHangup, Outcome: callpath.OutcomeCancelled}
			if errors.As(err, &de) {
				e.SIPStatus = de.Status
			}
		case context.Cause(ctx) == errShutdown:
			e = callpath.End{Reason: callpath.Shutdown, Outcome: callpath.OutcomeCancelled}
		case errors.As(err, &de):
			e = callpath.DialEnd(de.Status, de.Timeout)
		default:
			e = callpath.Fail(callpath.DialFailed)
		}
		closePeer(e.Reason)
		bg.Wait()
		e.EndedAt = time.Now()
		rec.Ended(e, media.Stats{})
		final = e
		log.Info("outbound call not answered", "outcome", e.Outcome, "reason", e.Reason, "sip_status", e.SIPStatus, "err", err)
		return
	}
	answeredAt := leg.start
	log.Info("outbound call answered", "setup_ms", answeredAt.Sub(start).Milliseconds(), "codec", neg.Codec.Name)
	c := <-peerCh
	if c.err != nil {
		hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		leg.Hangup(hctx, callpath.End{})
		cancel()
		bg.Wait()
		log.Warn("outbound call answered but the agent is unavailable", "err", c.err)
		final = callpath.End{Reason: callpath.ProviderDown, Outcome: callpath.OutcomeFailed, EndedAt: time.Now()}
		rec.Ended(final, media.Stats{})
		return
	}
	peer := c.peer
	if md := oc.MachineDetection; md != "" && md != callpath.AMDOff {
		// The agent waits for the verdict before its opening line.
		ao := callpath.AMDOptions{Mode: md, OnResult: func(res amd.Result) {
			log.Info("machine detection", "result", res.Verdict, "reason", res.Reason, "after_ms", res.After.Milliseconds(), "revised", res.Revised)
			rec.Metadata(callpath.AMDMetadata(md, res))
			if oc.OnMachineDetection != nil {
				oc.OnMachineDetection(res)
			}
		}}
		if md == callpath.AMDLeaveMessage {
			ao.Message = dialMessage
			ao.OnMessage = func(r callpath.VoicemailReport) {
				log.Info("voicemail message", "left", r.Left, "cue", r.Cue.Reason, "cue_at_ms", r.Cue.At.Milliseconds(),
					"started_at_ms", r.StartedAt.Milliseconds(), "played_ms", r.Played.Milliseconds(), "err", r.Err)
				rec.Metadata(r.Metadata())
			}
		}
		peer, err = callpath.MachineDetection(c.peer, ao)
		if err != nil {
			peer = c.peer
			log.Warn("machine detection unavailable", "err", err)
		}
	}
	maxDur := time.Duration(cfg.MaxCallDuration) * time.Second
	cp := callpath.New(callpath.Options{Leg: leg, Peer: peer, Log: log, MaxDuration: maxDur, Shutdown: s.killAll})
	cp.Answered(answeredAt)
	o.mu.Lock()
	o.cp, o.leg, o.codec, o.answered = cp, leg, neg.Codec.Name, answeredAt
	pend := o.pend
	o.mu.Unlock()
	s.kickLive()
	if pend != nil {
		cp.End(*pend)
	}
	if err := cp.Start(neg); err != nil {
		log.Warn("media or agent failed to start", "err", err)
		cp.End(callpath.Fail(callpath.Internal))
	}
	bg.Wait() // ringing recorded before the answer
	if err := rec.Answered(context.Background(), answeredAt); err != nil {
		log.Warn("could not record the answer", "err", err)
	}
	e, stats := cp.Run()
	rec.Ended(e, stats)
	final = e
	log.Info("outbound call ended", "reason", e.Reason, "duration_s", int(e.EndedAt.Sub(e.AnsweredAt).Seconds()),
		"rtp_in", stats.PacketsReceived, "rtp_out", stats.PacketsSent)
}

var errShutdown = fmt.Errorf("the gateway is shutting down")
