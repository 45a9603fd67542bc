package bridge

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
	"github.com/cxco/gateway/store"
)

// webrtcCall is one test call, from the browser's offer to its end: the call's
// leg (callpath.Leg), as a SIP dialog is a phone call's. Its callpath.Call
// supervises it and is the Line the provider session plays into.
//
// Goroutines: run (the supervisor, then the record); rtcpDrain reads our
// sender's RTCP until the peer connection closes. pion runs its own goroutines
// for ICE, DTLS and SRTP and stops them in PeerConnection.Close.
type webrtcCall struct {
	tc       *TestCalls
	id       int64               // the conversation id
	conv     *store.Conversation // as recorded at the start
	rec      callpath.Record
	agent    *store.Agent
	log      *slog.Logger
	pc       *webrtc.PeerConnection
	stream   *media.Stream
	peer     callpath.Peer
	cp       *callpath.Call
	answered time.Time     // when our SDP answer went out
	recorded chan struct{} // closed once the conversation's end is written
	drain    sync.WaitGroup
}

// setupCall records the conversation, opens the provider session and answers the
// offer. On error everything it made is undone and the conversation, if recorded,
// ends as failed.
func (tc *TestCalls) setupCall(ctx context.Context, co *store.Company, a *store.Agent, offer string) (*webrtcCall, string, error) {
	start := time.Now()
	caller := CallerWebRTC
	rec, err := tc.opt.Calls.Started(ctx, callpath.Start{Company: co, Agent: a, Caller: caller, StartedAt: start})
	if err != nil {
		return nil, "", err
	}
	conv := rec.Conversation()
	c := &webrtcCall{tc: tc, id: conv.ID, conv: conv, rec: rec, agent: a, recorded: make(chan struct{})}
	c.log = tc.log.With("test_call_id", conv.ID, "conversation_id", conv.ID, "company_id", co.ID, "agent_id", a.ID, "from", caller)
	c.log.Info("test call received")
	fail := func(e callpath.End, err error) (*webrtcCall, string, error) {
		if c.stream != nil {
			c.stream.Close() // closes the peer connection too
		} else if c.pc != nil {
			_ = c.pc.Close()
		}
		c.drain.Wait()
		rec.Ended(e, media.Stats{})
		c.log.Warn("test call refused", "reason", e.Reason, "err", err)
		return nil, "", err
	}

	// The browser's side: its offer, our PCMU track, the peer connection's events.
	if c.pc, err = tc.api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fail(callpath.Fail(callpath.Internal), err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(callpath.Fail(callpath.BadSDP), badOffer("sdp: the offer cannot be used (%v)", err))
	}
	local, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "cxco")
	if err != nil {
		return fail(callpath.Fail(callpath.Internal), err)
	}
	sender, err := c.pc.AddTrack(local)
	if err != nil {
		return fail(callpath.Fail(callpath.Internal), err)
	}
	c.drain.Add(1)
	go c.rtcpDrain(sender)
	tr := newPionTransport(c.pc, local)
	c.pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { tr.onTrack(t) })
	if c.stream, err = media.NewStreamOn(tr, tc.streamOptions(c.log)); err != nil {
		return fail(callpath.Fail(callpath.MediaUnavailable), err)
	}

	// The agent's side: the provider session, as for a phone call.
	cfg := store.ParseAgentConfig(a.Config)
	info := &callpath.Info{ConversationID: conv.ID, Company: co, Agent: a, Config: cfg, Caller: caller, Record: rec, Log: c.log}
	if c.peer, err = tc.opt.Connector.Connect(ctx, info); err != nil {
		reason := callpath.ProviderDown
		var r *callpath.Refusal
		if errors.As(err, &r) && r.Reason != "" {
			reason = r.Reason
		}
		return fail(callpath.Fail(reason), unavailable("the voice-AI provider is unavailable", err))
	}

	c.cp = callpath.New(callpath.Options{Leg: c, Peer: c.peer, Log: c.log, Shutdown: tc.closing,
		MaxDuration: time.Duration(cfg.MaxCallDuration) * time.Second})
	c.pc.OnConnectionStateChange(c.onState)

	// Our answer, with every candidate in it.
	answer, err := c.pc.CreateAnswer(nil)
	if err == nil {
		gathered := webrtc.GatheringCompletePromise(c.pc)
		if err = c.pc.SetLocalDescription(answer); err == nil {
			err = gather(ctx, gathered)
		}
	}
	if err != nil {
		c.peer.Close(callpath.Internal)
		return fail(callpath.Fail(callpath.MediaUnavailable), unavailable("cannot answer the offer", err))
	}
	c.answered = time.Now()
	tc.mu.Lock()
	tc.calls[c.id] = c
	tc.mu.Unlock()
	c.log.Info("test call answered", "setup_ms", time.Since(start).Milliseconds())
	return c, c.pc.LocalDescription().SDP, nil
}

// rtcpDrain reads the RTCP the browser sends about our track, so that pion's
// interceptors see it; it returns when the peer connection closes.
func (c *webrtcCall) rtcpDrain(s *webrtc.RTPSender) {
	defer c.drain.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// onState follows the peer connection (pion's goroutine): connected starts the
// media and the agent, so the opening line is heard from its start; failed,
// disconnected or closed ends the call.
func (c *webrtcCall) onState(st webrtc.PeerConnectionState) {
	c.log.Debug("peer connection", "state", st.String())
	switch st {
	case webrtc.PeerConnectionStateConnected:
		c.cp.Answered(time.Now())
		if err := c.cp.Start(sdp.Negotiated{Codec: sdp.PCMU, Direction: sdp.SendRecv}); err != nil {
			c.log.Warn("test call media failed to start", "err", err)
			c.cp.End(callpath.Fail(callpath.Internal))
			return
		}
		c.log.Info("test call connected", "inbound", c.stream.InboundChain(), "outbound", c.stream.OutboundChain())
	case webrtc.PeerConnectionStateFailed:
		c.cp.End(callpath.End{Reason: callpath.ICEFailed})
	case webrtc.PeerConnectionStateDisconnected:
		c.cp.End(callpath.End{Reason: callpath.ICEDisconnected})
	case webrtc.PeerConnectionStateClosed:
		c.cp.End(callpath.End{Reason: callpath.CallerHangup}) // the browser closed it (or we did, ending the call)
	}
}

// run supervises the call (callpath.Call.Run), then records it.
func (c *webrtcCall) run() {
	e, stats := c.cp.Run()
	c.drain.Wait()
	if e.AnsweredAt.IsZero() && e.Outcome == callpath.OutcomeCompleted {
		e.Outcome = callpath.OutcomeFailed // never connected: no call took place
	}
	c.rec.Ended(e, stats)
	c.tc.forget(c)
	close(c.recorded)
	if f := c.tc.opt.OnRecorded; f != nil {
		f(c.id)
	}
	var dur time.Duration
	if !e.AnsweredAt.IsZero() {
		dur = e.EndedAt.Sub(e.AnsweredAt)
	}
	c.log.Info("test call ended", "reason", e.Reason, "duration_s", int(dur.Seconds()),
		"rtp_in", stats.PacketsReceived, "rtp_out", stats.PacketsSent, "lost", stats.CumulativeLost,
		"jitter_ms", float64(stats.Jitter)/float64(time.Millisecond), "concealed", stats.Concealed, "late", stats.Late)
	c.tc.done()
}

// Stream implements callpath.Leg.
func (c *webrtcCall) Stream() *media.Stream { return c.stream }

// Check implements callpath.Leg: the browser must connect within ConnectTimeout
// of our answer, and then keep sending RTP.
func (c *webrtcCall) Check(now time.Time) (callpath.End, bool) {
	at := c.cp.AnsweredAt()
	if at.IsZero() {
		if now.Sub(c.answered) > c.tc.opt.ConnectTimeout {
			return callpath.Fail(callpath.ICETimeout), true
		}
		return callpath.End{}, false
	}
	last := c.stream.LastReceived()
	if last.Before(at) {
		last = at
	}
	if now.Sub(last) > c.tc.opt.RTPTimeout {
		return callpath.End{Reason: callpath.RTPTimeout}, true
	}
	return callpath.End{}, false
}

// Hangup implements callpath.Leg: closing the stream (after the agent) closes the
// peer connection; nothing more to say to a browser.
func (c *webrtcCall) Hangup(context.Context, callpath.End) {}

var _ callpath.Leg = (*webrtcCall)(nil)
