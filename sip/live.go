package sip

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// Live calls: this node keeps its answered agent calls in the store's live
// hash (store/live.go) — at once when one starts, ends, or goes on or off hold,
// and every liveEvery with a fresh quality figure — and hangs up the calls the
// API asks it to (a hang-up request names a conversation; the node carrying it
// is the only one that can send its BYE).

const liveEvery = 2 * time.Second

// kickLive asks the live loop to publish now (a call started, ended or changed state).
func (s *Server) kickLive() {
	select {
	case s.liveKick <- struct{}{}:
	default:
	}
}

// runLive is the live loop; it stops when stop closes, after saying that the
// calls it announced are over.
func (s *Server) runLive(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var events <-chan store.LiveEvent
	subscribe := func() {
		ch, err := s.opt.Live.SubscribeLive(ctx)
		if err != nil {
			s.liveWarn("cannot subscribe to hang-up requests", err)
			return
		}
		events = ch
	}
	subscribe()
	tick := time.NewTicker(liveEvery)
	defer tick.Stop()
	lv := &liveState{known: map[int64]store.LiveCall{}, last: map[int64]media.Stats{}}
	for {
		select {
		case <-stop:
			s.syncLive(lv, true)
			return
		case <-tick.C:
			if events == nil {
				subscribe()
			}
			s.syncLive(lv, false)
		case <-s.liveKick:
			s.syncLive(lv, false)
		case ev, ok := <-events:
			if !ok {
				events = nil // resubscribed at the next tick
				continue
			}
			if ev.Type == store.LiveHangup && s.hangupConversation(ev.ConversationID) {
				s.log.Info("call hung up on request from the API", "conversation_id", ev.ConversationID)
			}
		}
	}
}

type liveState struct {
	known  map[int64]store.LiveCall // announced and not ended
	last   map[int64]media.Stats    // each call's stats at the previous refresh
	warned time.Time
}

// syncLive publishes this node's calls: every call up now, and the end of those
// announced before that are gone (all of them when final).
func (s *Server) syncLive(lv *liveState, final bool) {
	now := time.Now()
	var calls []*call
	var outs []*outCall
	if !final {
		s.mu.Lock()
		for _, c := range s.calls {
			if c.conv != nil && c.route != nil && c.route.agent != nil {
				calls = append(calls, c)
			}
		}
		for _, o := range s.outbound {
			outs = append(outs, o)
		}
		s.mu.Unlock()
	}
	up := make([]store.LiveCall, 0, len(calls))
	seen := make(map[int64]bool, len(calls))
	for _, c := range calls {
		st := c.stream.Stats()
		lc := c.liveView(s.opt.Node, now, st, lv.last[c.conv.ID])
		lv.last[c.conv.ID] = st
		lv.known[c.conv.ID] = lc
		seen[c.conv.ID] = true
		up = append(up, lc)
	}
	for _, o := range outs {
		lc, st := o.liveView(s.opt.Node, now, lv.last[o.conv])
		lv.last[o.conv] = st
		lv.known[o.conv] = lc
		seen[o.conv] = true
		up = append(up, lc)
	}
	var gone []store.LiveCall
	for id, lc := range lv.known {
		if !seen[id] {
			gone = append(gone, lc)
			delete(lv.known, id)
			delete(lv.last, id)
		}
	}
	if len(up) == 0 && len(gone) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.opt.Live.EndLiveCalls(ctx, gone); err != nil {
		s.liveWarn("cannot record the end of live calls", err)
	}
	if err := s.opt.Live.PutLiveCalls(ctx, up); err != nil {
		s.liveWarn("cannot record live calls", err)
	}
}

// liveWarn logs a live-call failure at most once a minute: the calls go on,
// and the next refresh makes the record good.
func (s *Server) liveWarn(msg string, err error) {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	if time.Since(s.liveWarned) > time.Minute {
		s.liveWarned = time.Now()
		s.log.Warn(msg, "err", err)
	}
}

// hangupConversation ends this node's call of a conversation, if it has it.
func (s *Server) hangupConversation(id int64) bool {
	var target *call
	s.mu.Lock()
	for _, c := range s.calls {
		if c.conv != nil && c.conv.ID == id {
			target = c
			break
		}
	}
	out := s.outbound[id]
	s.mu.Unlock()
	if out != nil {
		out.end(callpath.End{Reason: callpath.APIHangup}) // an outbound call, ringing or answered
		return true
	}
	if target == nil {
		return false
	}
	target.cp.End(callpath.End{Reason: callpath.APIHangup})
	return true
}

// liveView is the call as the live view shows it; prev is its stats at the
// previous refresh, for the quality of the last interval.
func (c *call) liveView(node string, now time.Time, st, prev media.Stats) store.LiveCall {
	c.mu.Lock()
	hold, codec := c.hold, c.codec
	c.mu.Unlock()
	lc := store.LiveCall{ConversationID: c.conv.ID, CompanyID: c.route.company.ID, CompanyName: c.route.company.Name,
		AgentID: c.route.agent.ID, AgentName: c.route.agent.Name, Node: node, Caller: c.caller, Called: c.called, Direction: store.Inbound,
		StartedAt: c.start.UTC(), Codec: codec, Transport: c.transport, Provider: c.conv.Source, UpdatedAt: now.UTC()}
	switch human := c.cp.Bridged(); {
	case !c.isAcked():
		lc.State = store.LiveRinging
	case human:
		lc.State = store.LiveWithHuman
	case hold:
		lc.State = store.LiveOnHold
	default:
		lc.State = store.LiveTalking
	}
	if c.isAcked() {
		at := c.AnsweredAt().UTC()
		lc.AnsweredAt = &at
	}
	lc.Quality = liveQuality(st, prev)
	return lc
}

// liveQuality rates the last interval of the caller's audio: the share of its
// packets lost or too late to play, its jitter, the jitter buffer's delay, and
// the loss it reports of ours. Nil when it sent nothing (on hold, or not yet).
//
// The rating follows the usual VoIP planning limits for G.711 (ITU-T G.113 and
// G.114): good under 1% loss and 30 ms jitter, poor from 5% loss or 60 ms
// jitter (or the caller reporting 5% of ours lost), fair between.
func liveQuality(st, prev media.Stats) *store.LiveQuality {
	expected := float64(st.Expected) - float64(prev.Expected)
	if expected <= 0 || st.Expected < prev.Expected { // a new source restarted the counters
		return nil
	}
	lost := float64(st.CumulativeLost-prev.CumulativeLost) + float64(st.Late-prev.Late)
	q := &store.LiveQuality{LossPercent: round1(min(max(100*lost/expected, 0), 100)),
		JitterMS: round1(ms(st.Jitter)), BufferMS: round1(ms(st.JitterDepth))}
	remote := 0.0
	if st.Remote.Valid {
		remote = round1(100 * st.Remote.FractionLost)
		q.RemoteLossPercent = &remote
	}
	switch worst := max(q.LossPercent, remote); {
	case worst >= 5 || q.JitterMS >= 60:
		q.Rating = "poor"
	case worst >= 1 || q.JitterMS >= 30:
		q.Rating = "fair"
	default:
		q.Rating = "good"
	}
	return q
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
