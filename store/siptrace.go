package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// SIPMessage is one SIP message of a call as it went over the wire, with its
// secrets already redacted by whoever recorded it (the sip package): the
// conversation's SIP ladder.
type SIPMessage struct {
	At        time.Time `json:"at"`
	Direction string    `json:"direction"` // "in" (to the gateway) or "out"
	Transport string    `json:"transport"` // UDP, TCP, TLS
	Local     string    `json:"local"`     // our address, ip:port
	Remote    string    `json:"remote"`    // the far end's
	SIPCallID string    `json:"sip_call_id"`
	FirstLine string    `json:"first_line"` // request line or status line
	CSeq      string    `json:"cseq"`
	Message   string    `json:"message"` // the whole message, redacted
}

// SIPTraceBatch is what one call recorded since the last write.
type SIPTraceBatch struct {
	CompanyID, ConversationID int64
	Messages                  []SIPMessage
}

// AppendSIPTraces adds messages to their conversations' SIP ladders in one
// round trip. A ladder keeps its first max messages and expires keep after
// its last write: traces are for looking into recent calls, not an archive.
func (s *Store) AppendSIPTraces(ctx context.Context, batches []SIPTraceBatch, max int, keep time.Duration) error {
	if len(batches) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	var bad error
	for _, b := range batches {
		vals := make([]any, 0, len(b.Messages))
		for _, m := range b.Messages {
			j, err := marshal(m)
			if err != nil { // left out, the rest of the ladder kept
				s.notJSON("sip_trace")
				bad = errors.Join(bad, err)
				continue
			}
			vals = append(vals, j)
		}
		if len(vals) == 0 {
			continue
		}
		k := keySIPTrace(b.CompanyID, b.ConversationID)
		pipe.RPush(ctx, k, vals...)
		pipe.LTrim(ctx, k, 0, int64(max)-1)
		pipe.Expire(ctx, k, keep)
	}
	if pipe.Len() == 0 {
		return bad
	}
	_, err := pipe.Exec(ctx)
	return errors.Join(wrapRedis(err), bad)
}

// SIPTrace reads a conversation's SIP ladder in order, and until when it is
// kept (zero when there is none).
func (s *Store) SIPTrace(ctx context.Context, cid, id int64) ([]SIPMessage, time.Time, error) {
	k := keySIPTrace(cid, id)
	pipe := s.rdb.Pipeline()
	lr := pipe.LRange(ctx, k, 0, -1)
	ttl := pipe.PTTL(ctx, k)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, time.Time{}, wrapRedis(err)
	}
	out := make([]SIPMessage, 0, len(lr.Val()))
	for _, r := range lr.Val() {
		var m SIPMessage
		if err := json.Unmarshal([]byte(r), &m); err == nil {
			out = append(out, m)
		}
	}
	var until time.Time
	if d := ttl.Val(); d > 0 {
		until = s.now().Add(d).UTC().Truncate(time.Second)
	}
	return out, until, nil
}
