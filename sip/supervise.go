package sip

import (
	"context"
	"strings"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// run is the call's supervisor: it waits for whatever ends the call first — BYE,
// the far side, max duration, RTP inactivity, an expired session timer, shutdown —
// and then ends it once: BYE (when we end it), far side closed, media closed, record
// written.
func (c *call) run() {
	defer c.release()
	maxDur := time.Hour
	if c.route.agent != nil {
		maxDur = time.Duration(store.ParseAgentConfig(c.route.agent.Config).MaxCallDuration) * time.Second
	}
	limit := time.NewTimer(maxDur)
	defer limit.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var e endRequest
loop:
	for {
		p := c.currentPeer()
		select {
		case e = <-c.endCh:
			break loop
		case <-c.peerSwap:
			continue // the caller talks to someone else now: watch them
		case <-p.Done():
			if p != c.currentPeer() {
				continue // the agent left for a bridged transfer; the call goes on
			}
			pe := p.End()
			e = endRequest{reason: pe.Reason, failed: pe.Failed, sendBye: true, status: pe.Status, referTo: pe.ReferTo, referS: pe.ReferSeconds}
			break loop
		case <-limit.C:
			e = endRequest{reason: EndMaxDuration, sendBye: true}
			break loop
		case <-c.s.killAll:
			e = endRequest{reason: EndShutdown, sendBye: true}
			break loop
		case now := <-tick.C:
			if c.rtpTimedOut(now) {
				e = endRequest{reason: EndRTPTimeout, sendBye: true}
				break loop
			}
			if end, refresh := c.sessionTimerDue(now); end {
				e = endRequest{reason: EndSessionExpired, sendBye: true}
				break loop
			} else if refresh {
				go c.refreshSession()
			}
		}
	}
	if leg, ok := c.currentPeer().(*outLeg); ok && e.status == "" {
		// Whoever hung up, a call that was bridged to a human was transferred.
		pe := leg.End()
		e.status, e.referTo, e.referS = pe.Status, pe.ReferTo, pe.ReferSeconds
	}
	// The call is billed to its end by its own clock: when the BYE, CANCEL, timer
	// or far side's end was heard (end stamps it), whatever the BYE and the store
	// take below.
	c.endedAt = e.at
	if c.endedAt.IsZero() {
		c.endedAt = time.Now()
	}
	close(c.done)
	closeFar := func() {
		if p := c.currentPeer(); p != c.peer {
			p.Close(e.reason) // the bridged human's leg
		}
		c.peer.Close(e.reason)
		c.log.Info("far side closed", "reason", e.reason)
	}
	// Over now. When the caller is gone (our 200 was never ACKed), the far side
	// first: a provider session, billed by the second, must not wait for a BYE to
	// a dead peer (up to 64*T1). Otherwise the BYE first, so the far side can
	// finish its record of the end (a transfer's transcript entry) meanwhile.
	if e.reason == EndNoACK {
		closeFar()
	}
	// Writes below run without any request's context, with their own limits.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e.sendBye {
		c.sendBye(ctx)
	}
	if e.reason != EndNoACK {
		closeFar()
	}
	c.stream.Close()
	stats := c.stream.Stats()
	c.s.mu.Lock()
	delete(c.s.calls, c.id)
	c.s.mu.Unlock()
	c.s.kickLive()
	c.recordEnd(e, stats)
	c.s.obs.CallEnded(e.reason, 200, stats)
	dur := c.endedAt.Sub(c.AnsweredAt())
	c.log.Info("call ended", "reason", e.reason, "duration_s", int(dur.Seconds()),
		"rtp_in", stats.PacketsReceived, "rtp_out", stats.PacketsSent, "lost", stats.CumulativeLost,
		"jitter_ms", float64(stats.Jitter)/float64(time.Millisecond), "concealed", stats.Concealed, "late", stats.Late)
}

// rtpTimedOut: no RTP for --rtp-timeout, not counting time on hold.
func (c *call) rtpTimedOut(now time.Time) bool {
	c.mu.Lock()
	hold, since := c.hold, c.holdSince
	c.mu.Unlock()
	if hold || !c.isAcked() {
		return false // before the ACK, the no-ACK timer (64*T1) decides
	}
	last := c.stream.LastReceived()
	if t := c.AnsweredAt(); last.Before(t) {
		last = t
	}
	if last.Before(since) {
		last = since // back from hold: the clock starts again
	}
	return now.Sub(last) > c.s.opt.RTPTimeout
}

// setHold records whether the far end put the call on hold.
func (c *call) setHold(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hold != on {
		c.holdSince = time.Now()
		defer c.s.kickLive()
	}
	c.hold = on
}

// recordStart writes the conversation as in progress (and the caller's contact).
func (c *call) recordStart(ctx context.Context) error {
	caller := c.caller
	called := c.called
	// metadata_.sip: how the call reached us, with the number as the trunk dialled it.
	meta := map[string]any{"sip": map[string]any{"trunk": c.trunk.Name, "trunk_id": c.trunk.ID, "dialled": c.dialled,
		"transport": strings.ToLower(c.transport)}}
	conv, err := c.s.opt.Store.CreateConversation(ctx, store.Conversation{
		AgentID: c.route.agent.ID, CompanyID: c.route.company.ID, Channel: "voice", Direction: "inbound",
		CallerNumber: &caller, CalledNumber: &called, StartedAt: c.start, SIPCallID: c.callID, Source: "elevenlabs",
		Metadata: meta,
	})
	if err != nil {
		return err
	}
	c.conv = conv
	c.log = c.log.With("conversation_id", conv.ID)
	c.s.trace.attach(c.callID, c.log, conv) // its SIP ladder is kept with the conversation
	return nil
}

// recordEnd writes how the conversation ended, with its media statistics (RecordEnd).
func (c *call) recordEnd(e endRequest, stats media.Stats) {
	var answered time.Time
	if c.isAcked() || e.reason == EndNoACK {
		// A 200 that was never ACKed still ran the provider session until the
		// no-ACK timer: its time is recorded (and counted) like an answered call's.
		answered = c.AnsweredAt()
	}
	RecordEnd(c.s.opt.Store, c.conv, CallEnd{Reason: e.reason, Failed: e.failed, Status: e.status, ReferTo: e.referTo,
		ReferSeconds: e.referS, AnsweredAt: answered, EndedAt: c.endedAt}, stats, c.log)
}

func (c *call) isAcked() bool {
	select {
	case <-c.acked:
		return true
	default:
		return false
	}
}
