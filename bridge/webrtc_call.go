package bridge

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
)

// webrtcCall is one test call, from the browser's offer to its end. It is the
// sip.Call its peer (the provider session) plays into, as a phone call is.
//
// Goroutines: the supervisor (run) owns the call from the answer on and is the
// only one to end it: everything that can end a call (hang-up from the API, the
// peer ending, ICE failing, max duration, RTP timeout, shutdown) sends on endCh or
// is a case of its select, and the close path runs once. The RTP reader is the
// media stream's; rtcpDrain reads our sender's RTCP until the peer connection
// closes. pion runs its own goroutines for ICE, DTLS and SRTP and stops them in
// PeerConnection.Close.
type webrtcCall struct {
	tc     *TestCalls
	id     int64 // the conversation id
	conv   *store.Conversation
	agent  *store.Agent
	log    *slog.Logger
	pc     *webrtc.PeerConnection
	stream *media.Stream
	peer   sip.Peer

	answeredAt atomic.Pointer[time.Time] // when the browser connected
	connected  chan struct{}             // closed when the peer connection is first connected
	connOnce   sync.Once
	endCh      chan sip.CallEnd
	done       chan struct{} // closed when the call is over (the supervisor's loop ended)
	recorded   chan struct{} // closed once the conversation's end is written
	drain      sync.WaitGroup
}

// setupCall records the conversation, opens the provider session and answers the
// offer. On error everything it made is undone and the conversation, if recorded,
// ends as failed.
func (tc *TestCalls) setupCall(ctx context.Context, co *store.Company, a *store.Agent, offer string) (*webrtcCall, string, error) {
	start := time.Now()
	caller := CallerWebRTC
	conv, err := tc.opt.Store.CreateConversation(ctx, store.Conversation{AgentID: a.ID, CompanyID: co.ID, Channel: "voice",
		Direction: "inbound", CallerNumber: &caller, StartedAt: start, Source: "elevenlabs"})
	if err != nil {
		return nil, "", err
	}
	c := &webrtcCall{tc: tc, id: conv.ID, conv: conv, agent: a, connected: make(chan struct{}), endCh: make(chan sip.CallEnd, 1),
		done: make(chan struct{}), recorded: make(chan struct{})}
	c.log = tc.log.With("test_call_id", conv.ID, "conversation_id", conv.ID, "company_id", co.ID, "agent_id", a.ID, "from", caller)
	c.log.Info("test call received")
	fail := func(e sip.CallEnd, err error) (*webrtcCall, string, error) {
		if c.stream != nil {
			c.stream.Close() // closes the peer connection too
		} else if c.pc != nil {
			_ = c.pc.Close()
		}
		c.drain.Wait()
		sip.RecordEnd(tc.opt.Store, conv, e, media.Stats{}, c.log)
		c.log.Warn("test call refused", "reason", e.Reason, "err", err)
		return nil, "", err
	}

	// The browser's side: its offer, our PCMU track, the peer connection's events.
	if c.pc, err = tc.api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fail(sip.CallEnd{Reason: sip.EndInternal, Failed: true}, err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(sip.CallEnd{Reason: "bad_sdp", Failed: true}, badOffer("sdp: the offer cannot be used (%v)", err))
	}
	local, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "cxco")
	if err != nil {
		return fail(sip.CallEnd{Reason: sip.EndInternal, Failed: true}, err)
	}
	sender, err := c.pc.AddTrack(local)
	if err != nil {
		return fail(sip.CallEnd{Reason: sip.EndInternal, Failed: true}, err)
	}
	c.drain.Add(1)
	go c.rtcpDrain(sender)
	tr := newPionTransport(c.pc, local)
	c.pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { tr.onTrack(t) })
	c.pc.OnConnectionStateChange(c.onState)
	if c.stream, err = media.NewStreamOn(tr, tc.streamOptions(c.log)); err != nil {
		return fail(sip.CallEnd{Reason: sip.EndMediaUnavailable, Failed: true}, err)
	}

	// The agent's side: the provider session, as for a phone call.
	info := &sip.CallInfo{ConversationID: conv.ID, Company: co, Agent: a, Caller: caller, SIPCallID: "", Log: c.log}
	if c.peer, err = tc.opt.Connector.Connect(ctx, info); err != nil {
		reason := sip.EndProviderDown
		var st *sip.Status
		if errors.As(err, &st) && st.EndReason != "" {
			reason = st.EndReason
		}
		return fail(sip.CallEnd{Reason: reason, Failed: true}, unavailable("the voice-AI provider is unavailable", err))
	}

	// Our answer, with every candidate in it.
	answer, err := c.pc.CreateAnswer(nil)
	if err == nil {
		gathered := webrtc.GatheringCompletePromise(c.pc)
		if err = c.pc.SetLocalDescription(answer); err == nil {
			err = gather(ctx, gathered)
		}
	}
	if err != nil {
		c.peer.Close(sip.EndInternal)
		return fail(sip.CallEnd{Reason: sip.EndMediaUnavailable, Failed: true}, unavailable("cannot answer the offer", err))
	}
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
// media; failed, disconnected or closed ends the call.
func (c *webrtcCall) onState(s webrtc.PeerConnectionState) {
	c.log.Debug("peer connection", "state", s.String())
	switch s {
	case webrtc.PeerConnectionStateConnected:
		c.connOnce.Do(func() { close(c.connected) })
	case webrtc.PeerConnectionStateFailed:
		c.end(sip.CallEnd{Reason: EndICEFailed})
	case webrtc.PeerConnectionStateDisconnected:
		c.end(sip.CallEnd{Reason: EndICEDisconnected})
	case webrtc.PeerConnectionStateClosed:
		c.end(sip.CallEnd{Reason: sip.EndCallerHangup}) // the browser closed it (or we did, ending the call)
	}
}

// end asks the supervisor to end the call; the first request wins.
func (c *webrtcCall) end(e sip.CallEnd) {
	if e.EndedAt.IsZero() {
		e.EndedAt = time.Now() // the hang-up's own time, whatever the close path waits on
	}
	select {
	case c.endCh <- e:
	default:
	}
}

// run is the call's supervisor: it starts the media when the browser connects and
// ends the call once, on whatever comes first.
func (c *webrtcCall) run() {
	connect := time.NewTimer(c.tc.opt.ConnectTimeout)
	defer connect.Stop()
	maxDur := time.Duration(store.ParseAgentConfig(c.agent.Config).MaxCallDuration) * time.Second
	var limit <-chan time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	connected := c.connected
	var e sip.CallEnd
loop:
	for {
		select {
		case e = <-c.endCh:
			break loop
		case <-connected:
			connected = nil
			connect.Stop()
			if err := c.answer(); err != nil {
				c.log.Warn("test call media failed to start", "err", err)
				e = sip.CallEnd{Reason: sip.EndInternal, Failed: true}
				break loop
			}
			t := time.NewTimer(maxDur)
			defer t.Stop()
			limit = t.C
		case <-connect.C:
			e = sip.CallEnd{Reason: EndICETimeout, Failed: true}
			break loop
		case <-c.peer.Done():
			pe := c.peer.End()
			e = sip.CallEnd{Reason: pe.Reason, Failed: pe.Failed, Status: pe.Status, ReferTo: pe.ReferTo, ReferSeconds: pe.ReferSeconds}
			break loop
		case <-limit:
			e = sip.CallEnd{Reason: sip.EndMaxDuration}
			break loop
		case <-c.tc.closing:
			e = sip.CallEnd{Reason: sip.EndShutdown}
			break loop
		case now := <-tick.C:
			if c.rtpTimedOut(now) {
				e = sip.CallEnd{Reason: sip.EndRTPTimeout}
				break loop
			}
		}
	}
	if e.EndedAt.IsZero() {
		e.EndedAt = time.Now() // billed to here, before the provider session and the store are waited on
	}
	close(c.done)
	if c.AnsweredAt().IsZero() && !e.Failed && e.Status == "" {
		e.Failed = true // never connected: no call took place
	}
	c.peer.Close(e.Reason)
	c.stream.Close() // and the peer connection
	c.drain.Wait()
	stats := c.stream.Stats()
	e.AnsweredAt = c.AnsweredAt()
	sip.RecordEnd(c.tc.opt.Store, c.conv, e, stats, c.log)
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

// answer starts the media and the peer once the browser is connected: from now on
// the pacer's packets reach it, so the opening line is heard from its start.
func (c *webrtcCall) answer() error {
	now := time.Now()
	c.answeredAt.Store(&now)
	neg := sdp.Negotiated{Codec: sdp.PCMU, Direction: sdp.SendRecv}
	if err := c.stream.Start(neg, media.Consumer{Format: c.peer.Format(), Sink: c.peer.OnAudio, OnDigit: c.peer.OnDigit}); err != nil {
		return err
	}
	c.log.Info("test call connected", "inbound", c.stream.InboundChain(), "outbound", c.stream.OutboundChain())
	return c.peer.Start(c)
}

// rtpTimedOut: a connected call without RTP from the browser for RTPTimeout.
func (c *webrtcCall) rtpTimedOut(now time.Time) bool {
	at := c.AnsweredAt()
	if at.IsZero() {
		return false
	}
	last := c.stream.LastReceived()
	if last.Before(at) {
		last = at
	}
	return now.Sub(last) > c.tc.opt.RTPTimeout
}

// AnsweredAt implements sip.Call: when the browser connected.
func (c *webrtcCall) AnsweredAt() time.Time {
	if t := c.answeredAt.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// Play, Flush and Drained implement sip.Call over the media stream.
func (c *webrtcCall) Play(audio []byte) error  { return c.stream.Play(audio) }
func (c *webrtcCall) Flush() int               { return c.stream.Flush() }
func (c *webrtcCall) Drained() <-chan struct{} { return c.stream.Drained() }

// Hangup implements sip.Call: the agent ends the call.
func (c *webrtcCall) Hangup(reason string) { c.end(sip.CallEnd{Reason: reason}) }

// ErrNoTransfer: a browser test call has no phone line to hand over.
var ErrNoTransfer = errors.New("a browser test call cannot be transferred; transfers work on phone calls")

// Transfer implements sip.Call: test calls cannot be transferred (the agent is told
// and the call goes on).
func (c *webrtcCall) Transfer(context.Context, string, bool) error { return ErrNoTransfer }

var _ sip.Call = (*webrtcCall)(nil)
