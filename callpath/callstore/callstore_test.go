package callstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/callpath/callstore"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

func open(t *testing.T) *store.Store {
	t.Helper()
	red := redistest.StartRedis(t)
	sealer, _ := store.NewSealer(store.GenerateSecretKey())
	st, err := store.Open(context.Background(), store.Options{URL: red.URL, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func publish(t *testing.T, st *store.Store, co *store.Company, number string) *store.Agent {
	t.Helper()
	ctx := context.Background()
	if _, err := st.AddNumber(ctx, number, "ZA", "sip_trunk", false); err != nil {
		t.Fatal(err)
	}
	a, err := st.CreateAgent(ctx, store.Agent{CompanyID: co.ID, Name: "Ava", Personality: "p", OpeningLine: "o", VoiceID: 1, Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	a, err = st.PublishAgent(ctx, co.ID, a.ID, "ZA", func(context.Context, *store.Agent) (store.ProviderAgent, error) {
		return store.ProviderAgent{ID: "ext"}, nil
	}, func(context.Context, store.ProviderAgent) {})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestRoute: where a dialled number goes, and the refusal of each number that
// goes nowhere.
func TestRoute(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	cs := callstore.New(st, nil)
	co, _, err := st.CreateCompany(ctx, "Acme", "enterprise", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	active := publish(t, st, co, "+27210000001")
	paused := publish(t, st, co, "+27210000002")
	if _, err := st.PauseAgent(ctx, co.ID, paused.ID); err != nil {
		t.Fatal(err)
	}
	other, _, err := st.CreateCompany(ctx, "Suspended", "starter", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, st, other, "+27210000005")
	suspended := store.CompanySuspended
	if _, err := st.UpdateCompany(ctx, other.ID, store.CompanyPatch{Status: &suspended}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddNumber(ctx, "+27210000003", "ZA", "sip_trunk", false); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddNumber(ctx, "+27210000004", "ZA", "sip_trunk", true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		number string
		code   int
		reason callpath.Reason
		echo   bool
	}{
		{number: "+27210000001"},
		{number: "+27210000002", code: 480, reason: callpath.AgentPaused},
		{number: "+27210000003", code: 404, reason: callpath.UnassignedNumber},
		{number: "+27210000004", echo: true},
		{number: "+27210000005", code: 403, reason: callpath.CompanySuspended},
		{number: "+27219999999", code: 404, reason: callpath.UnknownNumber},
		{number: "", code: 404, reason: callpath.UnknownNumber},
	} {
		rt, err := cs.Route(ctx, tc.number)
		if tc.code == 0 {
			if err != nil || rt.Echo != tc.echo || (!tc.echo && (rt.Agent == nil || rt.Agent.ID != active.ID || rt.Company.ID != co.ID)) {
				t.Errorf("%s: route %+v, %v", tc.number, rt, err)
			}
			continue
		}
		var r *callpath.Refusal
		if !errors.As(err, &r) || r.Code != tc.code || r.Reason != tc.reason {
			t.Errorf("%s: %v, want %d %s", tc.number, err, tc.code, tc.reason)
		}
	}
}

// TestRecord: a call's record from start to end: in progress with how it
// reached us, the answer, transcript entries in order with the agent's last one
// corrected, an update, and the end with its status, reason, media statistics
// and usage, all after the entries.
func TestRecord(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	cs := callstore.New(st, nil)
	co, _, _ := st.CreateCompany(ctx, "Acme", "enterprise", nil, nil)
	a := publish(t, st, co, "+27210000001")
	start := time.Now().Add(-time.Minute)
	rec, err := cs.Started(ctx, callpath.Start{Company: co, Agent: a, Caller: "+27820000002", Called: "+27210000001",
		SIPCallID: "abc@host", StartedAt: start, Metadata: map[string]any{"sip": map[string]any{"trunk": "default"}}})
	if err != nil {
		t.Fatal(err)
	}
	cv := rec.Conversation()
	if cv.Status != store.ConvInProgress || *cv.CallerNumber != "+27820000002" || cv.SIPCallID != "abc@host" || cv.Source != store.ProviderElevenLabs {
		t.Fatalf("started: %+v", cv)
	}
	answered := start.Add(2 * time.Second)
	if err := rec.Answered(ctx, answered); err != nil {
		t.Fatal(err)
	}
	rec.Entry(store.RoleAgent, "Hello, I mean to say a lot.", 0)
	rec.Entry(store.RoleUser, "Hi.", 1.5)
	rec.Entry(store.RoleAgent, "Let me tell you everything about", 2)
	rec.CorrectAgent("Let me tell you", 2.4)
	ext := "conv_ext"
	rec.Served("openai", ext)
	if got := rec.Conversation(); got.ExternalConversationID == nil || *got.ExternalConversationID != ext || got.Source != "openai" {
		t.Fatalf("the record's copy was not updated: %+v", got)
	}
	rec.Metadata(map[string]any{"llm_usage": map[string]any{"realtime": map[string]any{"input_tokens": 12}}})
	ended := start.Add(62 * time.Second)
	rec.Ended(callpath.End{Reason: callpath.CallerHangup, AnsweredAt: answered, EndedAt: ended},
		media.Stats{PacketsReceived: 3000, PacketsSent: 3000, Codec: "PCMU"})
	d, err := st.GetConversationDetail(ctx, co.ID, cv.ID)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Conversation
	if c.Status != store.ConvCompleted || c.EndReason == nil || *c.EndReason != "caller_hangup" || c.DurationSeconds == nil || *c.DurationSeconds != 60 ||
		c.ExternalConversationID == nil || *c.ExternalConversationID != ext || c.Source != "openai" {
		t.Fatalf("conversation: %+v", c)
	}
	if u, _ := c.Metadata["llm_usage"].(map[string]any); u == nil || u["realtime"].(map[string]any)["input_tokens"] != float64(12) {
		t.Fatalf("metadata_.llm_usage: %v", c.Metadata)
	}
	if rtp, _ := c.Metadata["rtp"].(map[string]any); rtp["packets_received"] != float64(3000) || rtp["codec"] != "PCMU" {
		t.Fatalf("metadata_.rtp: %v", c.Metadata)
	}
	tr := d.Transcript
	if len(tr) != 3 || tr[0].Role != store.RoleAgent || tr[1].Role != store.RoleUser || tr[2].Message != "Let me tell you" || tr[2].Timestamp != 2 {
		t.Fatalf("transcript: %+v", tr)
	}
	u, err := st.UsageRange(ctx, co.ID, ended.UTC(), ended.UTC(), a.ID)
	if err != nil || u.Total.VoiceConversations != 1 {
		t.Fatalf("usage: %+v, %v", u, err)
	}
	rec.Ended(callpath.Fail(callpath.Internal), media.Stats{}) // a second end changes nothing
	if c2, _ := st.GetConversation(ctx, co.ID, cv.ID); c2.Status != store.ConvCompleted {
		t.Fatalf("a second end rewrote the record: %s", c2.Status)
	}
	summary, ok := "They talked.", true
	if err := rec.Analysed(ctx, &summary, &ok, map[string]any{"llm_tokens": 42}); err != nil {
		t.Fatal(err)
	}
	if c3, _ := st.GetConversation(ctx, co.ID, cv.ID); c3.TranscriptSummary == nil || *c3.TranscriptSummary != summary {
		t.Fatalf("analysis not stored: %+v", c3)
	}
}

// TestRecorderRunsOnlyWithWork: the transcript recorder's goroutine ends when it
// has written everything and another starts with the next entry; the transcript
// stays in order and a correction after a pause still replaces the agent's last
// entry (the positions carry over from one recorder to the next).
func TestRecorderRunsOnlyWithWork(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	cs := callstore.New(st, nil)
	co, _, _ := st.CreateCompany(ctx, "Acme", "enterprise", nil, nil)
	a := publish(t, st, co, "+27210000001")
	rec, err := cs.Started(ctx, callpath.Start{Company: co, Agent: a, Caller: "+27820000002", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if callstore.RecorderDone(rec) != nil {
		t.Fatal("a recorder runs before anything was written")
	}
	idle := func(step string) {
		t.Helper()
		if done := callstore.RecorderDone(rec); done != nil {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the recorder still runs 10 s after its writes", step)
			}
		}
		if callstore.RecorderDone(rec) != nil {
			t.Fatalf("%s: a recorder runs with nothing to write", step)
		}
	}
	rec.Entry(store.RoleAgent, "Hello, how can I help?", 0)
	rec.Entry(store.RoleUser, "My order.", 1)
	idle("after two entries")
	rec.Entry(store.RoleAgent, "Let me look that up for you now", 2)
	idle("after the third")
	rec.CorrectAgent("Let me look", 2.5)
	rec.Entry(store.RoleUser, "Thanks.", 3)
	idle("after the correction")
	d, err := st.GetConversationDetail(ctx, co.ID, rec.Conversation().ID)
	if err != nil {
		t.Fatal(err)
	}
	tr := d.Transcript
	if len(tr) != 4 || tr[0].Message != "Hello, how can I help?" || tr[1].Message != "My order." ||
		tr[2].Message != "Let me look" || tr[2].Timestamp != 2 || tr[3].Message != "Thanks." {
		t.Fatalf("transcript: %+v", tr)
	}
	rec.Ended(callpath.End{Reason: callpath.CallerHangup, AnsweredAt: time.Now()}, media.Stats{})
	if callstore.RecorderDone(rec) != nil {
		t.Fatal("a recorder runs after the end")
	}
}

// TestRecordEndings: each outcome is recorded with its status; a cancelled
// call is never answered.
func TestRecordEndings(t *testing.T) {
	st := open(t)
	ctx := context.Background()
	cs := callstore.New(st, nil)
	co, _, _ := st.CreateCompany(ctx, "Acme", "enterprise", nil, nil)
	a := publish(t, st, co, "+27210000001")
	for _, tc := range []struct {
		end    callpath.End
		status string
	}{
		{callpath.Fail(callpath.ProviderDown), store.ConvFailed},
		{callpath.End{Reason: callpath.Cancelled, Outcome: callpath.OutcomeCancelled, AnsweredAt: time.Now()}, store.ConvCancelled},
		{callpath.End{Reason: callpath.Transferred, Outcome: callpath.OutcomeTransferred, ReferTo: "+27215550100", ReferSeconds: 12,
			AnsweredAt: time.Now().Add(-time.Minute)}, store.ConvTransferred},
	} {
		rec, err := cs.Started(ctx, callpath.Start{Company: co, Agent: a, Caller: "+27820000002", StartedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		rec.Ended(tc.end, media.Stats{})
		c, _ := st.GetConversation(ctx, co.ID, rec.Conversation().ID)
		if c.Status != tc.status || (tc.status == store.ConvCancelled && c.AnsweredAt != nil) {
			t.Errorf("%s: %+v", tc.end.Reason, c)
		}
	}
}
