package sip

import (
	"context"
	"strings"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
)

// run supervises the call from its 200 on (callpath.Call.Run) and then does the
// SIP side's bookkeeping: the call leaves the server's table and the live
// view, and its conversation records how it ended.
func (c *call) run() {
	defer c.release()
	e, stats := c.cp.Run()
	c.s.mu.Lock()
	delete(c.s.calls, c.id)
	c.s.mu.Unlock()
	c.s.kickLive()
	c.recordEnd(e, stats)
	c.s.obs.CallEnded(string(e.Reason), 200, stats)
	dur := e.EndedAt.Sub(e.AnsweredAt)
	c.log.Info("call ended", "reason", e.Reason, "duration_s", int(dur.Seconds()),
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
	rec, err := c.s.opt.Calls.Started(ctx, callpath.Start{Company: c.route.company, Agent: c.route.agent,
		Caller: caller, Called: called, SIPCallID: c.callID, StartedAt: c.start, Metadata: meta})
	if err != nil {
		return err
	}
	conv := rec.Conversation()
	c.rec, c.conv = rec, conv
	c.log = c.log.With("conversation_id", conv.ID)
	c.s.trace.attach(c.callID, c.log, conv) // its SIP ladder is kept with the conversation
	return nil
}

// recordEnd writes how the conversation ended, with its media statistics (RecordEnd).
func (c *call) recordEnd(e callpath.End, stats media.Stats) {
	if !c.isAcked() && e.Reason != callpath.NoACK {
		// Only a call the caller confirmed was answered; a 200 that was never
		// ACKed still ran the provider session until the no-ACK timer: its time
		// is recorded (and counted) like an answered call's.
		e.AnsweredAt = time.Time{}
	}
	if c.rec != nil {
		c.rec.Ended(e, stats)
	}
}

func (c *call) isAcked() bool {
	select {
	case <-c.acked:
		return true
	default:
		return false
	}
}
