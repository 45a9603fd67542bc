package store

import (
	"context"
	"testing"
	"time"

	"github.com/cxco/gateway/store/redistest"
)

// TestUsageCounters: the usage counters of a day move exactly as the conversation
// records that feed them say, per company and per agent.
func TestUsageCounters(t *testing.T) {
	r := redistest.StartRedis(t)
	sealer, err := NewSealer(GenerateSecretKey())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{URL: r.URL, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	yes, no := true, false
	start := time.Date(2026, 3, 10, 23, 59, 50, 0, time.UTC)

	type step func(t *testing.T, cid, id int64)
	answer := func(t *testing.T, cid, id int64) {
		at := start.Add(2 * time.Second)
		if _, err := s.UpdateConversation(ctx, cid, id, func(c *Conversation) error { c.AnsweredAt = &at; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	finish := func(status string, secs, refer int) step {
		return func(t *testing.T, cid, id int64) {
			end := start.Add(2*time.Second + time.Duration(secs)*time.Second)
			if _, err := s.FinishConversation(ctx, cid, id, Final{Status: status, EndedAt: end, SIPReferSeconds: refer}); err != nil {
				t.Fatal(err)
			}
		}
	}
	analyse := func(ok *bool) step {
		return func(t *testing.T, cid, id int64) {
			if _, err := s.SetAnalysis(ctx, cid, id, nil, ok, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	say := func(n int) step {
		return func(t *testing.T, cid, id int64) {
			for i := 0; i < n; i++ {
				if err := s.AppendTranscript(ctx, cid, id, TranscriptEntry{Role: "user", Message: "hi", Timestamp: float64(i)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cases := []struct {
		name    string
		channel string
		steps   []step
		want    Usage
	}{
		{"answered call", "voice", []step{answer, finish(ConvCompleted, 212, 0)}, Usage{VoiceConversations: 1, VoiceSeconds: 212}},
		// Voice minutes are time with the AI; the 30 s with the human count as SIP REFER minutes.
		{"transferred call", "voice", []step{answer, finish(ConvTransferred, 61, 30)}, Usage{VoiceConversations: 1, VoiceSeconds: 31, ReferSeconds: 30}},
		{"never answered", "voice", []step{finish(ConvCancelled, 0, 0)}, Usage{}},
		{"still in progress", "voice", []step{answer, say(3)}, Usage{}},
		{"finished twice counts once", "voice", []step{answer, finish(ConvCompleted, 10, 0), finish(ConvFailed, 99, 0)}, Usage{VoiceConversations: 1, VoiceSeconds: 10}},
		{"analysed as successful", "voice", []step{answer, finish(ConvCompleted, 5, 0), analyse(&yes)}, Usage{VoiceConversations: 1, VoiceSeconds: 5, Analysed: 1, Successful: 1}},
		{"analysis changes its mind", "voice", []step{answer, finish(ConvCompleted, 5, 0), analyse(&yes), analyse(&no)}, Usage{VoiceConversations: 1, VoiceSeconds: 5, Analysed: 1}},
		{"analysed before the end", "voice", []step{answer, analyse(&yes), finish(ConvCompleted, 5, 0)}, Usage{VoiceConversations: 1, VoiceSeconds: 5, Analysed: 1, Successful: 1}},
		{"whatsapp chat", "whatsapp", []step{answer, say(4), finish(ConvCompleted, 300, 0)}, Usage{WAConversations: 1, WAMessages: 4}},
		{"whatsapp analysis is not voice success", "whatsapp", []step{answer, say(2), finish(ConvCompleted, 30, 0), analyse(&no)}, Usage{WAConversations: 1, WAMessages: 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			co, _, err := s.CreateCompany(ctx, c.name, "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			const aid = 7
			cv, err := s.CreateConversation(ctx, Conversation{CompanyID: co.ID, AgentID: aid, Channel: c.channel, Direction: "inbound", StartedAt: start})
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range c.steps {
				st(t, co.ID, cv.ID)
			}
			day := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
			rep, err := s.UsageRange(ctx, co.ID, day, day.AddDate(0, 0, 1), 0)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Days[0].Usage != c.want || rep.Total != c.want {
				t.Fatalf("counted on the day it started: %+v, total %+v, want %+v", rep.Days[0].Usage, rep.Total, c.want)
			}
			if rep.Days[1].Usage != (Usage{}) {
				t.Fatalf("the next day counts %+v", rep.Days[1].Usage)
			}
			if got := rep.ByAgent[aid]; (got == nil && c.want != Usage{}) || (got != nil && *got != c.want) {
				t.Fatalf("agent usage %+v, want %+v", got, c.want)
			}
			agentRep, err := s.UsageRange(ctx, co.ID, day, day, aid)
			if err != nil {
				t.Fatal(err)
			}
			if agentRep.Total != c.want {
				t.Fatalf("agent range %+v, want %+v", agentRep.Total, c.want)
			}
		})
	}
}
