package store

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Usage is counted per company and UTC day (the day the conversation started) in one
// hash, with the same counters per agent under "a:<agent id>:". A conversation counts
// once it has ended and only if it was answered; its voice seconds are its
// duration_seconds minus its sip_refer_seconds, and its SIP REFER seconds are those,
// so the counters always add up to exactly what the conversation records say.
const (
	uVoiceConvs = "voice_conversations"
	uVoiceSecs  = "voice_seconds"
	uReferSecs  = "refer_seconds"
	uAnalysed   = "voice_analysed"
	uSuccessful = "voice_successful"
	uWAConvs    = "wa_conversations"
	uWAMessages = "wa_messages"
	// Outbound calls are voice conversations too; these count them apart.
	uOutConvs = "outbound_conversations"
	uOutSecs  = "outbound_seconds"
)

// DayFormat is how days are written.
const DayFormat = "2006-01-02"

// Usage is a set of counters over some period.
type Usage struct {
	VoiceConversations int64
	VoiceSeconds       int64
	ReferSeconds       int64
	Analysed           int64
	Successful         int64
	WAConversations    int64
	WAMessages         int64
	// OutboundConversations and OutboundSeconds are the part of the voice
	// counters that outbound calls make up.
	OutboundConversations int64
	OutboundSeconds       int64
}

func (u *Usage) add(o Usage) {
	u.VoiceConversations += o.VoiceConversations
	u.VoiceSeconds += o.VoiceSeconds
	u.ReferSeconds += o.ReferSeconds
	u.Analysed += o.Analysed
	u.Successful += o.Successful
	u.WAConversations += o.WAConversations
	u.WAMessages += o.WAMessages
	u.OutboundConversations += o.OutboundConversations
	u.OutboundSeconds += o.OutboundSeconds
}

func (u *Usage) set(field string, v int64) {
	switch field {
	case uVoiceConvs:
		u.VoiceConversations = v
	case uVoiceSecs:
		u.VoiceSeconds = v
	case uReferSecs:
		u.ReferSeconds = v
	case uAnalysed:
		u.Analysed = v
	case uSuccessful:
		u.Successful = v
	case uWAConvs:
		u.WAConversations = v
	case uWAMessages:
		u.WAMessages = v
	case uOutConvs:
		u.OutboundConversations = v
	case uOutSecs:
		u.OutboundSeconds = v
	}
}

func usageDay(c *Conversation) string { return c.StartedAt.UTC().Format(DayFormat) }

func agentField(aid int64, f string) string { return "a:" + itoa(aid) + ":" + f }

// addUsage adds an ended, answered conversation to its day (sign 1), or takes it
// back out (sign -1: its end is being corrected), inside the caller's MULTI.
func (s *Store) addUsage(ctx context.Context, p redis.Pipeliner, c *Conversation, sign int64) {
	k := keyUsage(c.CompanyID, usageDay(c))
	add := func(field string, n int64) {
		p.HIncrBy(ctx, k, field, sign*n)
		p.HIncrBy(ctx, k, agentField(c.AgentID, field), sign*n)
	}
	if c.Channel == "whatsapp" {
		// A chat counts as a WhatsApp conversation with its messages, never as voice.
		msgs := int64(0)
		if c.MessageCount != nil {
			msgs = int64(*c.MessageCount)
		}
		add(uWAConvs, 1)
		add(uWAMessages, msgs)
		return
	}
	// Voice minutes are the time with the AI agent; transfer time (the caller with a
	// human while the gateway still carries the call) is counted apart, as SIP REFER
	// minutes. The two add up to the conversation's duration.
	dur := int64(0)
	if c.DurationSeconds != nil {
		dur = int64(*c.DurationSeconds)
	}
	refer := min(int64(c.SIPReferSeconds), dur)
	dur -= refer
	add(uVoiceConvs, 1)
	add(uVoiceSecs, dur)
	add(uReferSecs, int64(c.SIPReferSeconds))
	if c.Direction == Outbound {
		add(uOutConvs, 1)
		add(uOutSecs, dur)
	}
	if c.CallSuccessful != nil {
		if sign < 0 {
			s.countSuccess(ctx, p, c, c.CallSuccessful, nil)
		} else {
			s.countSuccess(ctx, p, c, nil, c.CallSuccessful)
		}
	}
}

// countSuccess moves the success counters from old to now (nil = not analysed).
// They are voice counters: a WhatsApp chat's analysis does not move them.
func (s *Store) countSuccess(ctx context.Context, p redis.Pipeliner, c *Conversation, old, now *bool) {
	if c.Channel == "whatsapp" {
		return
	}
	k := keyUsage(c.CompanyID, usageDay(c))
	val := func(b *bool) (analysed, ok int64) {
		if b == nil {
			return 0, 0
		}
		if *b {
			return 1, 1
		}
		return 1, 0
	}
	oa, os := val(old)
	na, ns := val(now)
	for _, f := range []struct {
		name string
		n    int64
	}{{uAnalysed, na - oa}, {uSuccessful, ns - os}} {
		if f.n != 0 {
			p.HIncrBy(ctx, k, f.name, f.n)
			p.HIncrBy(ctx, k, agentField(c.AgentID, f.name), f.n)
		}
	}
}

// UsageReport is usage over a date range.
type UsageReport struct {
	Days    []DayUsage       // one per day of the range, in order, zero days included
	Total   Usage            // over the range (of the agent, when one was asked for)
	ByAgent map[int64]*Usage // per agent over the range
}

// DayUsage is one day's counters.
type DayUsage struct {
	Date string
	Usage
}

// UsageRange reads the counters of every day from start to end (inclusive, UTC days).
// With agentID > 0, Days and Total are that agent's.
func (s *Store) UsageRange(ctx context.Context, cid int64, start, end time.Time, agentID int64) (*UsageReport, error) {
	var days []string
	for d := start.UTC(); !d.After(end.UTC()); d = d.AddDate(0, 0, 1) {
		days = append(days, d.Format(DayFormat))
	}
	cmds, err := pipelined(ctx, s, len(days), func(p redis.Pipeliner, i int) *redis.MapStringStringCmd {
		return p.HGetAll(ctx, keyUsage(cid, days[i]))
	})
	if err != nil {
		return nil, err
	}
	rep := &UsageReport{ByAgent: map[int64]*Usage{}}
	for i, d := range days {
		day := DayUsage{Date: d}
		for f, v := range cmds[i].Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			if rest, ok := strings.CutPrefix(f, "a:"); ok {
				aidStr, name, _ := strings.Cut(rest, ":")
				aid := parseID(aidStr)
				u := rep.ByAgent[aid]
				if u == nil {
					u = &Usage{}
					rep.ByAgent[aid] = u
				}
				var one Usage
				one.set(name, n)
				u.add(one)
				if aid == agentID {
					day.set(name, n)
				}
				continue
			}
			if agentID == 0 {
				day.set(f, n)
			}
		}
		rep.Days = append(rep.Days, day)
		rep.Total.add(day.Usage)
	}
	return rep, nil
}
