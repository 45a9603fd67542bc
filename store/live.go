package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Live calls: every node keeps its calls in progress in one hash, refreshed every
// few seconds, and announces changes on a pub/sub channel; any node's API lists
// them and streams the changes, and a hang-up request goes out on the same
// channel to whichever node carries the call (only that node can send its BYE).
//
//	cxco:live:calls   HASH     conversation id -> LiveCall JSON (updated_at tells a crashed node's)
//	cxco:live         PUB/SUB  LiveEvent JSON: upsert, end, hangup

// LiveStale is how old a live call's record may grow before readers take its
// node for gone and drop it; nodes refresh theirs far more often.
const LiveStale = 15 * time.Second

// LiveCall is a call in progress.
type LiveCall struct {
	ConversationID int64        `json:"conversation_id"`
	CompanyID      int64        `json:"company_id"`
	CompanyName    string       `json:"company_name"`
	AgentID        int64        `json:"agent_id"`
	AgentName      string       `json:"agent_name"`
	Node           string       `json:"node"`
	Caller         string       `json:"caller"`
	Called         string       `json:"called"`
	Direction      string       `json:"direction"` // inbound or outbound
	State          string       `json:"state"`     // LiveRinging, LiveTalking, LiveOnHold, LiveWithHuman
	StartedAt      time.Time    `json:"started_at"`
	AnsweredAt     *time.Time   `json:"answered_at"`
	Codec          string       `json:"codec"`
	Transport      string       `json:"transport"`
	Provider       string       `json:"provider"`
	Quality        *LiveQuality `json:"quality"`
	UpdatedAt      time.Time    `json:"updated_at"`
}

// Live call states.
const (
	LiveRinging   = "ringing"    // INVITE received, not answered yet
	LiveTalking   = "talking"    // answered, with the agent
	LiveOnHold    = "on_hold"    // the caller's side put the call on hold
	LiveWithHuman = "with_human" // a bridged transfer connected a human
)

// LiveQuality is how the caller's audio fares now: over the last few seconds,
// from the RTP the gateway receives and the RTCP reports the caller sends.
type LiveQuality struct {
	// Rating sums the figures up: good, fair or poor.
	Rating string `json:"rating"`
	// LossPercent is the share of the caller's packets lost or too late to
	// play, over the last interval.
	LossPercent float64 `json:"loss_percent"`
	// JitterMS is the RFC 3550 interarrival jitter of the caller's RTP.
	JitterMS float64 `json:"jitter_ms"`
	// BufferMS is the jitter buffer's delay now.
	BufferMS float64 `json:"buffer_ms"`
	// RemoteLossPercent is the loss the caller reports of our RTP (RTCP), when it does.
	RemoteLossPercent *float64 `json:"remote_loss_percent"`
	// MOS is the conversational quality estimate (ITU-T G.107), when the media engine gives one.
	MOS *float64 `json:"mos,omitempty"`
}

// LiveEvent is a message on the live channel.
type LiveEvent struct {
	Type string `json:"type"` // LiveUpsert, LiveEnd or LiveHangup
	// Calls are the new or changed calls (upsert) or the ended ones (end).
	Calls []LiveCall `json:"calls,omitempty"`
	// ConversationID is the call to hang up (hangup).
	ConversationID int64 `json:"conversation_id,omitempty"`
}

// Live event types.
const (
	LiveUpsert = "upsert"
	LiveEnd    = "end"
	LiveHangup = "hangup"
)

func keyLiveCalls() string { return prefix + "live:calls" }
func chanLive() string     { return prefix + "live" }

// PutLiveCalls records calls in progress (new ones or a refresh) and announces
// them. A call that cannot be stored as JSON (a NaN figure) is left out, counted
// (OnNotJSON) and named in the error; the others are written.
func (s *Store) PutLiveCalls(ctx context.Context, calls []LiveCall) error {
	vals := make([]any, 0, 2*len(calls))
	good := calls[:0:0]
	var bad error
	for _, c := range calls {
		b, err := marshal(c)
		if err != nil {
			s.notJSON("live_call")
			bad = errors.Join(bad, fmt.Errorf("live call of conversation %d left out: %w", c.ConversationID, err))
			continue
		}
		vals = append(vals, strconv.FormatInt(c.ConversationID, 10), b)
		good = append(good, c)
	}
	if len(good) == 0 {
		return bad
	}
	ev, err := marshal(LiveEvent{Type: LiveUpsert, Calls: good})
	if err != nil {
		return err
	}
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, keyLiveCalls(), vals...)
	pipe.Publish(ctx, chanLive(), ev)
	_, err = pipe.Exec(ctx)
	return errors.Join(wrapRedis(err), bad)
}

// EndLiveCalls removes calls that ended and announces it.
func (s *Store) EndLiveCalls(ctx context.Context, calls []LiveCall) error {
	if len(calls) == 0 {
		return nil
	}
	fields := make([]string, len(calls))
	for i, c := range calls {
		fields[i] = strconv.FormatInt(c.ConversationID, 10)
	}
	// The end event names the calls only: their quality figures are not needed.
	gone := make([]LiveCall, len(calls))
	for i, c := range calls {
		c.Quality = nil
		gone[i] = c
	}
	ev, err := marshal(LiveEvent{Type: LiveEnd, Calls: gone})
	if err != nil {
		return err
	}
	pipe := s.rdb.Pipeline()
	pipe.HDel(ctx, keyLiveCalls(), fields...)
	pipe.Publish(ctx, chanLive(), ev)
	_, err = pipe.Exec(ctx)
	return wrapRedis(err)
}

// LiveCalls lists the calls in progress of a company (cid 0: of every
// company), oldest first. Records a crashed node left behind are dropped.
func (s *Store) LiveCalls(ctx context.Context, cid int64) ([]LiveCall, error) {
	all, err := s.rdb.HGetAll(ctx, keyLiveCalls()).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	now := s.now()
	var out []LiveCall
	var stale []string
	for field, raw := range all {
		var c LiveCall
		if json.Unmarshal([]byte(raw), &c) != nil || now.Sub(c.UpdatedAt) > LiveStale {
			stale = append(stale, field)
			continue
		}
		if cid == 0 || c.CompanyID == cid {
			out = append(out, c)
		}
	}
	if len(stale) > 0 {
		_ = s.rdb.HDel(ctx, keyLiveCalls(), stale...).Err() // best effort: the next reader tries again
	}
	sortLive(out)
	return out, nil
}

// LiveCall reads one call in progress; ErrNotFound when there is none (or its
// node is gone).
func (s *Store) LiveCall(ctx context.Context, convID int64) (*LiveCall, error) {
	raw, err := s.rdb.HGet(ctx, keyLiveCalls(), strconv.FormatInt(convID, 10)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, wrapRedis(err)
	}
	var c LiveCall
	if json.Unmarshal([]byte(raw), &c) != nil || s.now().Sub(c.UpdatedAt) > LiveStale {
		return nil, ErrNotFound
	}
	return &c, nil
}

// RequestHangup asks the node that carries a call to hang it up.
func (s *Store) RequestHangup(ctx context.Context, convID int64) error {
	ev, err := marshal(LiveEvent{Type: LiveHangup, ConversationID: convID})
	if err != nil {
		return err
	}
	return wrapRedis(s.rdb.Publish(ctx, chanLive(), ev).Err())
}

// SubscribeLive delivers the live channel's events until ctx ends; the channel
// is closed then. A slow reader loses events rather than holding up the
// others (the subscription's buffer is bounded). go-redis reconnects a broken
// subscription by itself; events sent meanwhile are lost, which the periodic
// refreshes make good.
func (s *Store) SubscribeLive(ctx context.Context) (<-chan LiveEvent, error) {
	ps := s.rdb.Subscribe(ctx, chanLive())
	if _, err := ps.Receive(ctx); err != nil { // subscribed for real before the caller goes on
		ps.Close()
		return nil, wrapRedis(err)
	}
	out := make(chan LiveEvent, 64)
	go func() {
		defer close(out)
		defer ps.Close()
		ch := ps.Channel(redis.WithChannelSize(256))
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				var ev LiveEvent
				if json.Unmarshal([]byte(m.Payload), &ev) != nil {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func sortLive(calls []LiveCall) {
	slices.SortFunc(calls, func(a, b LiveCall) int {
		return cmp.Or(a.StartedAt.Compare(b.StartedAt), cmp.Compare(a.ConversationID, b.ConversationID))
	})
}
