package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"
)

// Conversation statuses.
const (
	ConvInProgress  = "in_progress"
	ConvCompleted   = "completed"
	ConvTransferred = "transferred"
	ConvFailed      = "failed"
	ConvCancelled   = "cancelled"

	// An outbound call before it is answered: queued (placed through the API,
	// not yet ringing), ringing (the callee's phone rings: a 180 or 183 came).
	// It ends answered (then completed, transferred or failed like any call) or
	// with what the SIP final response said: busy (486, 600), no_answer (no
	// answer within the ring timeout, 408, 480, 487), rejected (603 and other
	// refusals) or failed (sip_status says which).
	ConvQueued   = "queued"
	ConvRinging  = "ringing"
	ConvBusy     = "busy"
	ConvNoAnswer = "no_answer"
	ConvRejected = "rejected"
)

// Directions of a conversation.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// ConvOpen reports whether a conversation with this status has not ended yet.
func ConvOpen(status string) bool {
	return status == ConvInProgress || status == ConvQueued || status == ConvRinging
}

// Conversation is one call or chat with an agent.
type Conversation struct {
	ID                     int64         `json:"id"`
	AgentID                int64         `json:"agent_id"`
	CompanyID              int64         `json:"company_id"`
	Channel                string        `json:"channel"`
	CallerNumber           *string       `json:"caller_number"`
	CalledNumber           *string       `json:"called_number,omitempty"`
	Direction              string        `json:"direction"`
	StartedAt              time.Time     `json:"started_at"`
	AnsweredAt             *time.Time    `json:"answered_at,omitempty"`
	EndedAt                *time.Time    `json:"ended_at"`
	DurationSeconds        *int          `json:"duration_seconds"`
	MessageCount           *int          `json:"message_count"`
	Status                 string        `json:"status"`
	EndReason              *string       `json:"end_reason"`
	CallSuccessful         *bool         `json:"call_successful"`
	SIPReferDestination    *string       `json:"sip_refer_destination"`
	SIPReferSeconds        int           `json:"sip_refer_seconds"`
	TranscriptSummary      *string       `json:"transcript_summary"`
	Source                 string        `json:"source"`
	ExternalConversationID *string       `json:"external_conversation_id"`
	ContactID              *int64        `json:"contact_id,omitempty"`
	SIPCallID              string        `json:"sip_call_id,omitempty"`
	AudioQuality           *AudioQuality `json:"audio_quality,omitempty"`
	NodeID                 string        `json:"node_id,omitempty"` // the gateway node that carries (or carried) the call
	// SIPStatus is the final SIP status of an outbound call's INVITE when it
	// was not answered (486, 487, 603, ...).
	SIPStatus *int           `json:"sip_status,omitempty"`
	Metadata  map[string]any `json:"metadata_,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
}

// AudioQuality is how good the caller's audio was when it reached the gateway,
// as the ITU-T G.107 E-model rates what the call's media measured (the detail is
// in metadata_.rtp): set when a call with media ends.
type AudioQuality struct {
	MOS     float64 `json:"mos"`      // 1 to 4.5
	RFactor float64 `json:"r_factor"` // 0 to 100
	// Rating is ITU-T G.109's category for the R-factor: best, high, medium,
	// low or poor (below 60: nearly all users dissatisfied).
	Rating string `json:"rating"`
	Poor   bool   `json:"poor"` // R below 70: many users dissatisfied (low or poor)
}

// Role says who spoke a transcript entry.
type Role string

// Transcript roles.
const (
	RoleAgent  Role = "agent"  // the voice-AI agent
	RoleUser   Role = "user"   // the caller (what they said, or a keypad entry as a turn)
	RoleSystem Role = "system" // the gateway: transfers, background keypad entries
)

// TranscriptEntry is one utterance; Timestamp is seconds since the call was answered.
type TranscriptEntry struct {
	Role      Role    `json:"role"`
	Message   string  `json:"message"`
	Timestamp float64 `json:"timestamp"`
}

// ConversationDetail is a conversation with its transcript.
type ConversationDetail struct {
	*Conversation
	Transcript []TranscriptEntry `json:"transcript"`
}

var touchContactScript = redis.NewScript(`
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then
  id = ARGV[2]
  redis.call('HSET', KEYS[1], ARGV[1], id)
  redis.call('SET', ARGV[4] .. 'contact:' .. id, ARGV[3])
  redis.call('ZADD', KEYS[2], id, id)
end
redis.call('ZADD', ARGV[4] .. 'contact:' .. id .. ':convs', ARGV[5], ARGV[5])
return tonumber(id)`)

// CreateConversation records a new conversation as in progress (or queued, when
// c.Status says so: an outbound call) and links it to the other party's contact
// (the caller's, or the callee's of an outbound call), creating the contact the
// first time the number talks to the company.
func (s *Store) CreateConversation(ctx context.Context, c Conversation) (*Conversation, error) {
	id, err := s.nextID(ctx, "conversation")
	if err != nil {
		return nil, err
	}
	now := s.Now()
	if c.Status != ConvQueued {
		c.Status = ConvInProgress
	}
	c.ID, c.CreatedAt = id, now
	if c.StartedAt.IsZero() {
		c.StartedAt = now
	}
	c.StartedAt = c.StartedAt.UTC().Truncate(time.Second)
	if c.Source == "" {
		c.Source = "elevenlabs"
	}
	other := c.CallerNumber
	if c.Direction == Outbound {
		other = c.CalledNumber
	}
	if other != nil && *other != "" {
		cid, err := s.touchContact(ctx, c.CompanyID, *other, id)
		if err != nil {
			return nil, err
		}
		c.ContactID = &cid
	}
	if s.node != "" {
		// Listed under its node before the record exists: a crash in between leaves
		// a member the sweeper drops, never a conversation no one owns.
		c.NodeID = s.node
		z := redis.Z{Score: float64(now.UnixMilli()), Member: liveMember(c.CompanyID, id)}
		if err := s.rdb.ZAdd(ctx, keyNodeLive(s.node), z).Err(); err != nil {
			return nil, wrapRedis(err)
		}
	}
	b, err := marshal(c)
	if err != nil {
		return nil, err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		z := redis.Z{Score: float64(id), Member: id}
		p.Set(ctx, keyConv(c.CompanyID, id), b, 0)
		p.ZAdd(ctx, keyConvs(c.CompanyID), z)
		p.ZAdd(ctx, keyConvsAgent(c.CompanyID, c.AgentID), z)
		p.ZAdd(ctx, keyConvsChannel(c.CompanyID, c.Channel), z)
		return nil
	})
	if err != nil {
		return nil, wrapRedis(err)
	}
	return &c, nil
}

func (s *Store) touchContact(ctx context.Context, cid int64, number string, convID int64) (int64, error) {
	existing, err := s.rdb.HGet(ctx, keyContactsByNum(cid), number).Int64()
	if err == nil {
		_, err = touchContactScript.Run(ctx, s.rdb, []string{keyContactsByNum(cid), keyContacts(cid)}, number, existing, "", company(cid), convID).Int64()
		return existing, wrapRedis(err)
	}
	newID, err := s.nextID(ctx, "contact")
	if err != nil {
		return 0, err
	}
	now := s.Now()
	ct := Contact{ID: newID, CompanyID: cid, PhoneNumber: number, Tags: []string{}, FirstSeenAt: now, CreatedAt: now, UpdatedAt: now}
	b, err := marshal(ct)
	if err != nil {
		return 0, err
	}
	id, err := touchContactScript.Run(ctx, s.rdb, []string{keyContactsByNum(cid), keyContacts(cid)}, number, newID, b, company(cid), convID).Int64()
	return id, wrapRedis(err)
}

// GetConversation reads a conversation of the company.
func (s *Store) GetConversation(ctx context.Context, cid, id int64) (*Conversation, error) {
	var c Conversation
	if err := s.getJSON(ctx, keyConv(cid, id), &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// GetConversationDetail reads a conversation and its transcript.
func (s *Store) GetConversationDetail(ctx context.Context, cid, id int64) (*ConversationDetail, error) {
	c, err := s.GetConversation(ctx, cid, id)
	if err != nil {
		return nil, err
	}
	tr, err := s.Transcript(ctx, cid, id)
	if err != nil {
		return nil, err
	}
	return &ConversationDetail{Conversation: c, Transcript: tr}, nil
}

// Transcript reads a conversation's transcript in order.
func (s *Store) Transcript(ctx context.Context, cid, id int64) ([]TranscriptEntry, error) {
	raw, err := s.rdb.LRange(ctx, keyTranscript(cid, id), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis(err)
	}
	out := make([]TranscriptEntry, 0, len(raw))
	for _, r := range raw {
		var e TranscriptEntry
		if json.Unmarshal([]byte(r), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// AppendTranscript adds entries at once, so nothing said is lost if the process dies.
func (s *Store) AppendTranscript(ctx context.Context, cid, id int64, entries ...TranscriptEntry) error {
	vals := make([]any, len(entries))
	for i, e := range entries {
		b, err := marshal(e)
		if err != nil {
			return err
		}
		vals[i] = b
	}
	return wrapRedis(s.rdb.RPush(ctx, keyTranscript(cid, id), vals...).Err())
}

// ListConversations pages through a company's conversations, newest first, filtered
// by agent and/or channel.
func (s *Store) ListConversations(ctx context.Context, cid, agentID int64, channel string, cursor int64, limit int) (Page[Conversation], error) {
	idx := keyConvs(cid)
	var keep func(*Conversation) bool
	switch {
	case agentID > 0 && channel != "":
		idx = keyConvsAgent(cid, agentID)
		keep = func(c *Conversation) bool { return c.Channel == channel }
	case agentID > 0:
		idx = keyConvsAgent(cid, agentID)
	case channel != "":
		idx = keyConvsChannel(cid, channel)
	}
	return pageRecords(ctx, s, idx, cursor, limit, func(id int64) string { return keyConv(cid, id) }, keep,
		func(c *Conversation) int64 { return c.ID })
}

// UpdateConversation changes a conversation with fn (answer time, provider ids, ...).
func (s *Store) UpdateConversation(ctx context.Context, cid, id int64, fn func(*Conversation) error) (*Conversation, error) {
	return mutate(ctx, s, keyConv(cid, id), nil, func(c *Conversation, _ redis.Pipeliner) error { return fn(c) })
}

// Final describes how a conversation ended. It is spooled as JSON (spool.go).
type Final struct {
	Status          string         `json:"status"`
	EndedAt         time.Time      `json:"ended_at"`
	EndReason       string         `json:"end_reason,omitempty"`
	SIPReferSeconds int            `json:"sip_refer_seconds,omitempty"`
	ReferTo         string         `json:"refer_to,omitempty"`
	Metadata        map[string]any `json:"metadata,omitempty"` // merged into metadata_
	AudioQuality    *AudioQuality  `json:"audio_quality,omitempty"`
	// AnsweredAt is when the call was answered, if it was and the record does not
	// know it yet (usage counts only answered conversations).
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	// SIPStatus is an unanswered outbound call's final SIP status.
	SIPStatus int `json:"sip_status,omitempty"`
}

// FinishConversation records the end of an in-progress conversation, its usage
// counters and its event in one transaction, so usage always agrees with the
// records. Finishing twice is a no-op that returns the conversation as it is,
// with one exception: the true end of a call another node closed as node_lost
// corrects that record (see correctsNodeLost).
func (s *Store) FinishConversation(ctx context.Context, cid, id int64, f Final) (*Conversation, error) {
	c, _, err := s.finishConversation(ctx, cid, id, f)
	return c, err
}

// correctsNodeLost says whether f, the end its own node recorded, replaces the end
// another node gave c when it judged that node lost. That happens when a node
// stopped during a Redis outage with its calls' ends in the spool file: once
// Redis is back the other nodes close those calls as node_lost (billed to the last
// heartbeat) before the node restarts and replays the true ends; or when a node
// cut off from Redis longer than its lease finishes its calls after all. Only a
// node_lost end is replaced, only by a real end (not node_lost, not open), and
// only once: the corrected record no longer says node_lost, and its
// metadata_.node_lost.corrected_at stays as the mark.
func correctsNodeLost(c *Conversation, f Final) bool {
	if c.Status != ConvFailed || c.EndReason == nil || *c.EndReason != EndNodeLost {
		return false
	}
	if f.EndReason == EndNodeLost || ConvOpen(f.Status) || f.Status == "" {
		return false
	}
	lost, _ := c.Metadata["node_lost"].(map[string]any)
	_, done := lost["corrected_at"]
	return !done
}

// finishConversation is FinishConversation, also saying whether this call ended
// (or corrected) it. The conversation leaves its node's live set once its end is
// written.
func (s *Store) finishConversation(ctx context.Context, cid, id int64, f Final) (*Conversation, bool, error) {
	n, err := s.rdb.LLen(ctx, keyTranscript(cid, id)).Result()
	if err != nil {
		return nil, false, wrapRedis(err)
	}
	changed, corrected := false, false
	c, err := mutate(ctx, s, keyConv(cid, id), nil, func(c *Conversation, p redis.Pipeliner) error {
		changed, corrected = false, false
		switch {
		case ConvOpen(c.Status):
		case correctsNodeLost(c, f):
			corrected = true
			// Take back what the node_lost end counted; the true end counts below.
			if c.AnsweredAt != nil {
				s.addUsage(ctx, p, c, -1)
			}
			lost, _ := c.Metadata["node_lost"].(map[string]any)
			if lost == nil {
				lost = map[string]any{}
			}
			lost["corrected_at"] = fmtTime(s.now())
			lost["corrected_by"] = s.node
			if c.EndedAt != nil {
				lost["lost_ended_at"] = fmtTime(*c.EndedAt)
			}
			if c.DurationSeconds != nil {
				lost["lost_duration_seconds"] = *c.DurationSeconds
			}
			c.mergeMetadata(map[string]any{"node_lost": lost})
			c.EndReason = nil
		default:
			return nil
		}
		changed = true
		end := f.EndedAt.UTC().Truncate(time.Second)
		if end.IsZero() {
			end = s.Now()
		}
		c.Status, c.EndedAt = f.Status, &end
		if c.AnsweredAt == nil && f.AnsweredAt != nil {
			at := f.AnsweredAt.UTC().Truncate(time.Second)
			c.AnsweredAt = &at
		}
		mc := int(n)
		c.MessageCount = &mc
		if f.EndReason != "" {
			c.EndReason = &f.EndReason
		}
		if f.ReferTo != "" {
			c.SIPReferDestination = &f.ReferTo
		}
		c.SIPReferSeconds = f.SIPReferSeconds
		if f.SIPStatus != 0 {
			st := f.SIPStatus
			c.SIPStatus = &st
		}
		c.mergeMetadata(f.Metadata)
		if f.AudioQuality != nil {
			c.AudioQuality = f.AudioQuality
		}
		if c.AnsweredAt != nil {
			d := max(0, int(end.Sub(*c.AnsweredAt)/time.Second))
			c.DurationSeconds = &d
			s.addUsage(ctx, p, c, 1)
		}
		// A correction is told as the end it is: a second conversation.completed
		// (or .transferred) with the corrected record, the only conversation events
		// the API defines; metadata_.node_lost.corrected_at tells it apart.
		typ := EventConversationCompleted
		if c.Status == ConvTransferred {
			typ = EventConversationTransferred
		}
		return s.queueEvent(ctx, p, cid, typ, c)
	})
	if err != nil {
		return nil, false, err
	}
	if corrected {
		s.log.Warn("a call closed as node_lost got its true end from its own node: record corrected", "conversation_id", id,
			"status", c.Status, "ended_at", c.EndedAt, "duration_seconds", c.DurationSeconds)
		if f := s.onCorrected.Load(); f != nil {
			(*f)(c)
		}
	}
	if c.NodeID != "" {
		if err := s.rdb.ZRem(ctx, keyNodeLive(c.NodeID), liveMember(cid, id)).Err(); err != nil {
			// The end is written; the member is only a pointer the sweeper drops later.
			s.log.Warn("conversation ended but is still listed under its node", "conversation_id", id, "err", err)
		}
	}
	return c, changed, nil
}

// SetAnalysis stores the provider's post-call analysis and keeps the success
// counters of usage in step with it.
func (s *Store) SetAnalysis(ctx context.Context, cid, id int64, summary *string, successful *bool, metadata map[string]any) (*Conversation, error) {
	return mutate(ctx, s, keyConv(cid, id), nil, func(c *Conversation, p redis.Pipeliner) error {
		if summary != nil {
			c.TranscriptSummary = summary
		}
		if successful != nil && c.AnsweredAt != nil && !ConvOpen(c.Status) {
			s.countSuccess(ctx, p, c, c.CallSuccessful, successful)
		}
		if successful != nil {
			c.CallSuccessful = successful
		}
		c.mergeMetadata(metadata)
		return nil
	})
}

// mergeMetadata adds m's keys to metadata_ (made on the first key).
func (c *Conversation) mergeMetadata(m map[string]any) {
	for k, v := range m {
		if c.Metadata == nil {
			c.Metadata = map[string]any{}
		}
		c.Metadata[k] = v
	}
}

// SetTranscriptEntry replaces entry i of a transcript (a correction of what the
// agent actually said after it was interrupted).
func (s *Store) SetTranscriptEntry(ctx context.Context, cid, id int64, i int, e TranscriptEntry) error {
	b, err := marshal(e)
	if err != nil {
		return err
	}
	return wrapRedis(s.rdb.LSet(ctx, keyTranscript(cid, id), int64(i), b).Err())
}
