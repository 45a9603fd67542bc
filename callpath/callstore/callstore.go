// Package callstore is the call path over the store: where a dialled number
// goes, and each call's conversation record (in progress at the INVITE, the
// answer, the transcript as it happens, the end with its media statistics and
// usage) with the spool that keeps those writes through a Redis outage. It
// implements what sip and bridge declare they need (sip.Calls, callpath.Record),
// so neither holds the whole store.
package callstore

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/quality"
	"github.com/cxco/gateway/store"
)

// Store routes calls and records them.
type Store struct {
	st  *store.Store
	log *slog.Logger
	// WriteTimeout bounds every write on a call's path (default 5 s); the end of
	// a call, which counts usage, has 10 s.
	WriteTimeout time.Duration
}

// New is the call path's view of st.
func New(st *store.Store, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{st: st, log: log, WriteTimeout: 5 * time.Second}
}

// Route finds where a dialled number (E.164) goes. An error is a
// *callpath.Refusal: 404 for a number that is not in the pool or not assigned,
// 403 for a suspended company, 480 for a paused or draft agent, 503 when the
// store cannot be read.
func (s *Store) Route(ctx context.Context, number string) (callpath.Route, error) {
	unavailable := func(err error) error { return callpath.Unavailable(callpath.StoreUnavailable, err) }
	if number == "" {
		return callpath.Route{}, callpath.Refuse(404, "Not Found", callpath.UnknownNumber, nil)
	}
	pn, err := s.st.GetNumberByE164(ctx, number)
	if errors.Is(err, store.ErrNotFound) {
		return callpath.Route{}, callpath.Refuse(404, "Not Found", callpath.UnknownNumber, nil)
	}
	if err != nil {
		return callpath.Route{}, unavailable(err)
	}
	if pn.Status == store.NumberEcho {
		return callpath.Route{Echo: true}, nil
	}
	unassigned := callpath.Refuse(404, "Not Found", callpath.UnassignedNumber, nil)
	if pn.Status != store.NumberAssigned || pn.CompanyID == nil || pn.AgentID == nil {
		return callpath.Route{}, unassigned
	}
	co, err := s.st.GetCompany(ctx, *pn.CompanyID)
	if errors.Is(err, store.ErrNotFound) {
		return callpath.Route{}, unassigned
	}
	if err != nil {
		return callpath.Route{}, unavailable(err)
	}
	if co.Status == store.CompanySuspended {
		return callpath.Route{}, callpath.Refuse(403, "Forbidden", callpath.CompanySuspended, nil)
	}
	a, err := s.st.GetAgent(ctx, co.ID, *pn.AgentID)
	if errors.Is(err, store.ErrNotFound) {
		return callpath.Route{}, unassigned
	}
	if err != nil {
		return callpath.Route{}, unavailable(err)
	}
	switch a.Status {
	case store.AgentActive:
		return callpath.Route{Company: co, Agent: a}, nil
	case store.AgentPaused:
		return callpath.Route{}, callpath.Refuse(480, "Temporarily Unavailable", callpath.AgentPaused, nil)
	case store.AgentDraft:
		return callpath.Route{}, callpath.Refuse(480, "Temporarily Unavailable", callpath.AgentDraft, nil)
	default:
		return callpath.Route{}, callpath.Refuse(404, "Not Found", callpath.AgentArchived, nil)
	}
}

// Started records a call being taken: its conversation, in progress.
func (s *Store) Started(ctx context.Context, in callpath.Start) (callpath.Record, error) {
	c := store.Conversation{AgentID: in.Agent.ID, CompanyID: in.Company.ID, Channel: "voice", Direction: store.Inbound,
		StartedAt: in.StartedAt, SIPCallID: in.SIPCallID, Source: store.ProviderOf(in.Agent), Metadata: in.Metadata}
	if in.Outbound {
		c.Direction, c.Status = store.Outbound, store.ConvQueued
	}
	if in.Caller != "" {
		caller := in.Caller
		c.CallerNumber = &caller
	}
	if in.Called != "" {
		called := in.Called
		c.CalledNumber = &called
	}
	ctx, cancel := context.WithTimeout(ctx, s.WriteTimeout)
	defer cancel()
	conv, err := s.st.CreateConversation(ctx, c)
	if err != nil {
		return nil, err
	}
	r := &record{s: s, conv: conv, log: s.log.With("conversation_id", conv.ID)}
	r.tr = newTranscript(s.st, s.st.Spool(), conv.CompanyID, conv.ID, r.log)
	return r, nil
}

// Open is the record of a conversation already created (tests, tools).
func (s *Store) Open(conv *store.Conversation, log *slog.Logger) callpath.Record {
	if log == nil {
		log = s.log
	}
	r := &record{s: s, conv: conv, log: log}
	r.tr = newTranscript(s.st, s.st.Spool(), conv.CompanyID, conv.ID, log)
	return r
}

// record is one call's conversation record (callpath.Record).
type record struct {
	s   *Store
	log *slog.Logger
	tr  *transcript

	mu    sync.Mutex
	conv  *store.Conversation // as created, with the updates since
	ended bool
}

// Conversation implements callpath.Record.
func (r *record) Conversation() *store.Conversation {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := *r.conv
	return &c
}

// Answered implements callpath.Record.
func (r *record) Answered(ctx context.Context, at time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, r.s.WriteTimeout)
	defer cancel()
	_, err := r.s.st.UpdateConversation(ctx, r.conv.CompanyID, r.conv.ID, func(cv *store.Conversation) error {
		if cv.AnsweredAt == nil {
			t := at.UTC().Truncate(time.Second)
			cv.AnsweredAt = &t
		}
		if cv.Status == store.ConvQueued || cv.Status == store.ConvRinging {
			cv.Status = store.ConvInProgress // an outbound call was answered
		}
		return nil
	})
	return err
}

// Ringing implements callpath.Progress: a queued outbound call rings.
func (r *record) Ringing(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.s.WriteTimeout)
	defer cancel()
	_, err := r.s.st.UpdateConversation(ctx, r.conv.CompanyID, r.conv.ID, func(cv *store.Conversation) error {
		if cv.Status == store.ConvQueued {
			cv.Status = store.ConvRinging
		}
		return nil
	})
	return err
}

// Entry implements callpath.Record.
func (r *record) Entry(role store.Role, text string, at float64) {
	r.tr.add(job{entry: &store.TranscriptEntry{Role: role, Message: text, Timestamp: at}})
}

// CorrectAgent implements callpath.Record.
func (r *record) CorrectAgent(text string, at float64) {
	r.tr.add(job{correct: true, entry: &store.TranscriptEntry{Role: store.RoleAgent, Message: text, Timestamp: at}})
}

// Served implements callpath.Record.
func (r *record) Served(slug, externalID string) {
	r.mu.Lock()
	c := *r.conv
	c.Source = slug
	if externalID != "" {
		c.ExternalConversationID = &externalID
	}
	r.conv = &c
	r.mu.Unlock()
	r.tr.add(job{source: slug, externalID: externalID})
}

// Metadata implements callpath.Record.
func (r *record) Metadata(metadata map[string]any) {
	if len(metadata) == 0 {
		return
	}
	r.tr.add(job{metadata: metadata})
}

// Transcript implements callpath.Record.
func (r *record) Transcript(ctx context.Context) ([]store.TranscriptEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, r.s.WriteTimeout)
	defer cancel()
	return r.s.st.Transcript(ctx, r.conv.CompanyID, r.conv.ID)
}

// Ended implements callpath.Record: the transcript's last entries first (given
// 3 s, then to the spool), then the end, through the spool when there is one (so a
// Redis outage delays it rather than losing it), else on its own 10 s timeout.
func (r *record) Ended(e callpath.End, stats media.Stats) {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	r.ended = true
	r.mu.Unlock()
	r.tr.flush(3 * time.Second)
	Finish(r.s.st, r.conv, e, stats, r.log)
}

// Analysed implements callpath.Record.
func (r *record) Analysed(ctx context.Context, summary *string, successful *bool, metadata map[string]any) error {
	w := store.Write{Op: store.WriteAnalysis, CompanyID: r.conv.CompanyID, Conversation: r.conv.ID,
		Summary: summary, Successful: successful, Metadata: metadata}
	wctx, cancel := context.WithTimeout(ctx, 2*r.s.WriteTimeout)
	defer cancel()
	err := r.s.st.Apply(wctx, w)
	if sp := r.s.st.Spool(); err != nil && sp != nil && errors.Is(err, store.ErrUnavailable) {
		sp.Do(w)
		return nil
	}
	return err
}

// Finish writes the end of a conversation with its media statistics under
// metadata_.rtp; the store adds the usage counters and the event in the same
// transaction. It goes through the store's spool when there is one, in order
// after any transcript entries the call could not write yet, and kept through a
// Redis outage and a restart (the spool file); the usage counters are part of
// this write.
func Finish(st *store.Store, conv *store.Conversation, e callpath.End, stats media.Stats, log *slog.Logger) {
	if conv == nil {
		return
	}
	status := store.ConvCompleted
	if e.Outcome != callpath.OutcomeCompleted {
		status = string(e.Outcome)
	}
	ended := e.EndedAt
	if ended.IsZero() {
		ended = time.Now()
	}
	f := store.Final{Status: status, EndedAt: ended, EndReason: string(e.Reason), SIPReferSeconds: e.ReferSeconds, ReferTo: e.ReferTo,
		SIPStatus: e.SIPStatus}
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
