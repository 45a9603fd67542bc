package sip

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/quality"
	"github.com/cxco/gateway/store"
)

// CallEnd is how a call ended, as its conversation records it.
type CallEnd struct {
	Reason       string // end reason, e.g. EndCallerHangup
	Failed       bool   // recorded as failed rather than completed
	Status       string // a final status instead of completed/failed (transferred, cancelled)
	ReferTo      string
	ReferSeconds int
	// AnsweredAt is when the call was answered (and the far end confirmed it:
	// the ACK, or ICE for WebRTC); zero when it never was. Usage counts only
	// answered calls.
	AnsweredAt time.Time
	// EndedAt is when the call ended (the supervisor decided it); zero: now.
	// The BYE and the far side's close come after it and are not call time.
	EndedAt time.Time
}

// RecordEnd writes the end of a call's conversation with the call's media
// statistics under metadata_.rtp; the store adds the usage counters and the
// event in the same transaction. It goes through the store's spool when there is
// one (so a Redis outage delays it rather than losing it), else runs on its own
// 10 s timeout, whatever ended the call. Both SIP calls and bridge's WebRTC test calls end through it,
// so their records look the same.
func RecordEnd(st *store.Store, conv *store.Conversation, e CallEnd, stats media.Stats, log *slog.Logger) {
	if conv == nil {
		return
	}
	status := store.ConvCompleted
	switch {
	case e.Status != "":
		status = e.Status
	case e.Failed:
		status = store.ConvFailed
	}
	ended := e.EndedAt
	if ended.IsZero() {
		ended = time.Now()
	}
	f := store.Final{Status: status, EndedAt: ended, EndReason: e.Reason, SIPReferSeconds: e.ReferSeconds, ReferTo: e.ReferTo}
	if t := e.AnsweredAt; !t.IsZero() && status != store.ConvCancelled {
		f.AnsweredAt = &t
	}
	if stats.PacketsReceived > 0 || stats.PacketsSent > 0 {
		f.Metadata = map[string]any{"rtp": RTPMetadata(stats)}
	}
	if q := stats.Quality; q.MOS > 0 {
		r := round2(q.R)
		f.AudioQuality = &store.AudioQuality{MOS: round2(q.MOS), RFactor: r, Rating: quality.Rating(r), Poor: r < 70}
	}
	w := store.Write{Op: store.WriteFinish, CompanyID: conv.CompanyID, Conversation: conv.ID, Final: &f}
	if sp := st.Spool(); sp != nil {
		// In order after any transcript entries the call could not write yet, and
		// kept through a Redis outage (and a restart): the usage counters are part
		// of this write.
		sp.Do(w)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.Apply(ctx, w); err != nil && log != nil {
		log.Error("could not record the end of the conversation", "err", err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// RTPMetadata is a call's media statistics as conversations record them
// (metadata_.rtp).
func RTPMetadata(s media.Stats) map[string]any {
	return map[string]any{
		"codec": s.Codec, "srtp": s.SRTP, "srtp_failed": s.SRTPFailed,
		"packets_received": s.PacketsReceived, "packets_sent": s.PacketsSent,
		"octets_received": s.OctetsReceived, "octets_sent": s.OctetsSent,
		"expected": s.Expected, "lost": s.CumulativeLost, "jitter_ms": ms(s.Jitter),
		"late": s.Late, "duplicates": s.Duplicates, "out_of_order": s.OutOfOrder,
		"concealed_frames": s.Concealed, "jitter_depth_ms": ms(s.JitterDepth), "jitter_depth_max_ms": ms(s.JitterDepthMax),
		"dtmf_digits": s.Digits, "played_frames": s.Played, "flushed_frames": s.Flushed, "discarded_frames": s.Discarded,
		"queue_dropped": s.QueueDropped, "hold_seconds": math.Round(s.HoldTime.Seconds()*10) / 10,
		"remote_lost": s.Remote.CumulativeLost, "remote_jitter_ms": ms(s.Remote.Jitter),
		// The E-model's rating of the inbound audio and what it was given.
		"jitter_depth_avg_ms": ms(s.JitterDepthAvg), "concealed_ms": ms(time.Duration(s.Concealed) * 20 * time.Millisecond), "late_ms": ms(s.LateAudio),
		"underruns": s.Underruns, "underrun_ms": ms(s.UnderrunTime), "loss_bursts": s.LossRuns, "r_factor": round2(s.Quality.R), "mos": round2(s.Quality.MOS),
		"e_model_delay_ms": ms(s.Quality.Delay), "e_model_loss": round2(100*s.Quality.Loss) / 100, "burst_ratio": round2(s.Quality.BurstR),
	}
}
