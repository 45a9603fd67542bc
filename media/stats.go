package media

import (
	"log/slog"
	"time"

	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/media/quality"
)

// Stats are a stream's counters, per RFC 3550 where it defines them.
type Stats struct {
	Codec string // on the wire: PCMU, PCMA, G722 or opus
	SRTP  string // the SRTP suite; "" for plain RTP

	PacketsSent     uint64
	OctetsSent      uint64
	SilenceSent     uint64 // packets of silence sent while nothing was queued
	PacketsReceived uint64 // valid RTP from the far end (audio and events)
	OctetsReceived  uint64 // payload octets

	// Expected and CumulativeLost follow RFC 3550 A.3 for the current
	// source, except that duplicates are not counted as received.
	Expected       uint64
	CumulativeLost int64
	// FractionLost is the loss of the last RTCP report interval (0..1).
	FractionLost float64
	// Jitter is the RFC 3550 A.8 interarrival jitter.
	Jitter time.Duration

	Late       uint64 // packets too late for playout
	Duplicates uint64
	OutOfOrder uint64
	// Concealed counts inbound frames in which audio the caller sent was lost
	// or came too late, and was concealed; not the frames filled while the
	// caller sent nothing (hold, pauses). See jitter.Stats.Concealed.
	Concealed uint64
	Resyncs   uint64 // jitter buffer restarts (SSRC change, timestamp jump)
	Frames    uint64 // inbound frames handed to the consumer

	JitterDepth    time.Duration // now
	JitterDepthMax time.Duration
	JitterDepthAvg time.Duration // mean over the frames played

	// LossRuns counts the runs of consecutive Concealed frames (loss bursts);
	// LateAudio is the audio of packets the jitter buffer dropped as too late.
	LossRuns  uint64
	LateAudio time.Duration

	// Quality is the ITU-T G.107 E-model's estimate of the inbound audio
	// (see Quality); zero before any audio was received.
	Quality Quality

	Digits uint64

	IgnoredSource      uint64 // RTP from an acceptable source other than the latched one
	RefusedSource      uint64 // RTP from an address the source policy does not accept
	Relatched          uint64 // times the source moved without a re-INVITE (SourcePolicy)
	IgnoredPayloadType uint64
	Malformed          uint64
	SRTPFailed         uint64 // SRTP packets dropped: authentication failed, or a replay

	Played       uint64 // outbound frames of queued audio sent
	QueueDropped uint64 // outbound frames dropped because the queue was full
	Flushed      uint64 // outbound frames dropped by barge-in (Flush)
	Discarded    uint64 // outbound frames dropped as no longer wanted (Discard: ringback at a transfer)
	Queued       int    // outbound frames waiting now
	// Underruns counts the times the outbound queue ran dry in the middle of
	// the far side's audio (more came within a second, with no barge-in), and
	// UnderrunTime the silence the caller heard because of it: provider audio
	// that arrived later than it was due to be played.
	Underruns    uint64
	UnderrunTime time.Duration

	// HoldTime is how long the far end held the call (our direction did not
	// send: it offered sendonly or inactive), the current hold included.
	HoldTime time.Duration

	RTCPSent     uint64
	RTCPReceived uint64
	RemoteBye    bool
	Remote       RemoteReport
}

// Stats returns the stream's counters.
func (s *Stream) Stats() Stats {
	var st Stats
	st.Codec = s.Codec()
	st.SRTP = s.SRTP()
	in := &s.in
	in.mu.Lock()
	st.SRTPFailed = in.srtpFailed
	st.PacketsReceived = in.packets
	st.OctetsReceived = in.octets
	st.Expected = in.expected()
	st.CumulativeLost = in.cumulativeLost()
	st.FractionLost = float64(in.fraction) / 256
	if in.rate > 0 {
		st.Jitter = time.Duration(in.jitter * float64(time.Second) / float64(in.rate))
	}
	st.Digits = in.digits
	st.IgnoredSource = in.ignoredSource
	st.RefusedSource = in.refusedSource
	st.Relatched = in.relatched
	st.IgnoredPayloadType = in.ignoredPayloadType
	st.Malformed = in.malformed
	st.Frames = in.frames
	var j jitter.Stats
	switch {
	case in.jb != nil:
		j = in.jb.Stats()
	case in.wb != nil:
		j = in.wb.Stats()
	}
	st.Duplicates = in.dupDecoded
	conceal := jitter.ConcealPitch
	if in.jb != nil || in.wb != nil {
		conceal = s.opt.Concealment
		st.Late = j.Late
		st.Duplicates += j.Duplicate
		st.OutOfOrder = j.Reordered
		st.Concealed = j.Concealed
		st.Resyncs = j.Resyncs
		st.JitterDepth = j.Depth
		st.JitterDepthMax = j.MaxDepth
		st.JitterDepthAvg = j.AvgDepth
		st.LossRuns = j.LossRuns
		st.LateAudio = j.LateAudio
	}
	in.mu.Unlock()

	o := &s.out
	o.mu.Lock()
	st.PacketsSent = o.packets
	st.OctetsSent = o.octets
	st.SilenceSent = o.silence
	st.Played = o.played
	st.QueueDropped = o.q.dropped
	st.Flushed = o.flushed
	st.Discarded = o.discarded
	st.Queued = o.q.n
	st.Underruns = o.underruns
	st.UnderrunTime = time.Duration(o.underrunFrames) * frameDur
	o.mu.Unlock()

	st.HoldTime = s.hold.total(s.clk.Now())

	c := &s.ctl
	c.mu.Lock()
	st.RTCPSent = c.sent
	st.RTCPReceived = c.received
	st.RemoteBye = c.bye
	st.Remote = c.remote
	c.mu.Unlock()
	st.Quality = st.quality(conceal)
	return st
}

// Quality is the E-model's (ITU-T G.107, media/quality) rating of what the
// caller's audio suffered on its way to the gateway's jitter buffer and in it.
type Quality struct {
	R   float64 // transmission rating, 0..100
	MOS float64 // conversational quality estimate, 1..4.5
	// Delay is the one-way delay the rating counts: half the RTCP round trip
	// (when the far end sends reports), the 20 ms of a packet, and the jitter
	// buffer's mean depth.
	Delay time.Duration
	// Loss is the share of the caller's packets lost or dropped as late, and
	// BurstR how bursty the losses were (1: random).
	Loss, BurstR float64
}

// quality rates the stream's inbound audio; zero before any was received.
func (st Stats) quality(conceal jitter.Concealment) Quality {
	if st.Expected == 0 || st.Frames == 0 {
		return Quality{}
	}
	lost := float64(max(st.CumulativeLost, 0)) + float64(st.Late)
	q := Quality{Loss: min(lost/float64(st.Expected), 1)}
	q.BurstR = quality.BurstRatio(float64(st.Concealed), float64(st.LossRuns), float64(st.Expected))
	q.Delay = st.Remote.RTT/2 + frameDur + st.JitterDepthAvg
	codec := quality.G711PLC
	if conceal != jitter.ConcealPitch {
		// G.113 rates G.711 with Appendix I's concealment and without any;
		// repeat-and-fade is not rated, and counts as without.
		codec = quality.G711
	}
	q.R = quality.R(quality.Impairments{Delay: q.Delay, Loss: q.Loss, BurstR: q.BurstR, Codec: codec})
	q.MOS = quality.MOS(q.R)
	return q
}

// LogValue logs the figures an operator looks at after a call.
func (st Stats) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("codec", st.Codec),
		slog.String("srtp", st.SRTP),
		slog.Uint64("sent", st.PacketsSent),
		slog.Uint64("received", st.PacketsReceived),
		slog.Int64("lost", st.CumulativeLost),
		slog.Duration("jitter", st.Jitter),
		slog.Uint64("late", st.Late),
		slog.Uint64("duplicates", st.Duplicates),
		slog.Uint64("out_of_order", st.OutOfOrder),
		slog.Uint64("concealed", st.Concealed),
		slog.Duration("late_audio", st.LateAudio),
		slog.Duration("jitter_depth_avg", st.JitterDepthAvg),
		slog.Duration("jitter_depth_max", st.JitterDepthMax),
		slog.Float64("mos", float64(int(st.Quality.MOS*100+0.5))/100),
		slog.Uint64("digits", st.Digits),
		slog.Uint64("queue_dropped", st.QueueDropped),
		slog.Uint64("srtp_failed", st.SRTPFailed),
		slog.Uint64("underruns", st.Underruns),
		slog.Bool("remote_report", st.Remote.Valid),
		slog.Float64("remote_fraction_lost", st.Remote.FractionLost),
		slog.Duration("remote_jitter", st.Remote.Jitter),
	)
}
