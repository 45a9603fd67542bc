package bridge_test

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/bridge/mediastream/mediastreamsim"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/store"
)

// TestBotConversation: an agent whose provider is the company's own bot, over
// a Media Streams websocket to the reference bot. The gateway opens with
// connected and start (the call's ids, µ-law at 8 kHz, the custom parameters:
// the gateway's cxco_* and the agent's own), sends the caller's audio as 20 ms
// media, each digit as dtmf, and each mark back once the bot's audio before it
// has played; the bot's opening line and echo are heard; its transcript
// messages are the conversation's transcript; # (test hook) gets a farewell
// and an end_call tool call, and the call ends once the farewell has played,
// with stop sent to the bot. The company's headers are sent.
func TestBotConversation(t *testing.T) {
	r := newRig(t, rigOpts{provider: store.ProviderMediaStream, opening: "Hello from your own bot.",
		bot: mediastreamsim.Options{Hooks: []string{mediastreamsim.HookHashEndsCall}, Headers: map[string]string{"Authorization": "Bearer bot-secret"}},
		beforePublish: func(r *rig) {
			if _, err := r.st.CreateCredential(context.Background(), r.co.ID, store.ProviderMediaStream,
				map[string]any{"headers": map[string]any{"Authorization": "Bearer bot-secret"}}); err != nil {
				t.Fatal(err)
			}
		},
		config: map[string]any{"transfer": map[string]any{"destinations": []any{map[string]any{"number": "+27215550100", "condition": "asks for sales"}}}}})
	r.connect("PCMU")
	start := time.Now()
	waitFor(t, "the opening line", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 4000 })
	if f := audiotest.DominantFrequency(loud(r.phone.audioSince(start))[:4000], 8000); math.Abs(f-440) > 5 {
		t.Fatalf("opening line at %.1f Hz", f)
	}
	waitFor(t, "the opening line's mark back", 8*time.Second, func() bool { return len(r.bot.Streams()[0].Marks) == 1 })
	st := r.bot.Streams()[0]
	var dests []map[string]string
	_ = json.Unmarshal([]byte(st.Parameters["cxco_transfer_destinations"]), &dests)
	if st.Parameters["cxco_caller"] != "+27820000002" || st.Parameters["cxco_opening_line"] != "Hello from your own bot." || st.Parameters["team"] != "sales" ||
		len(dests) != 1 || dests[0]["number"] != "+27215550100" || !strings.HasPrefix(st.StreamSid, "MZ") || !strings.HasPrefix(st.CallSid, "CA") {
		t.Fatalf("start: %+v", st)
	}
	spoke := time.Now()
	r.phone.send(tone(1000, -10, time.Second))
	r.phone.send(make([]int16, 8000*7/10))
	waitFor(t, "the echo", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(spoke))) >= 4000 })
	if f := audiotest.DominantFrequency(loud(r.phone.audioSince(spoke)), 8000); math.Abs(f-1000) > 5 {
		t.Fatalf("echo at %.1f Hz", f)
	}
	<-r.call.Drained()
	r.digits("1#")
	select {
	case <-r.sess.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the bot did not end the call")
	}
	if e := r.sess.End(); e.Reason != callpath.AgentHangup {
		t.Fatalf("end %+v", e)
	}
	r.end(callpath.AgentHangup)
	waitFor(t, "stop at the bot", 5*time.Second, func() bool { return r.bot.Streams()[0].Stopped })
	st = r.bot.Streams()[0]
	if st.Digits != "1#" || !slices.Equal(st.ToolCalls, []string{"end_call"}) || len(st.ToolResults) != 1 || st.ToolResults[0].IsError ||
		st.MediaIn < 50 || len(st.Marks) < 3 {
		t.Fatalf("bot saw %+v", st)
	}
	tr := r.transcript()
	roles := ""
	for _, e := range tr {
		roles += string(e.Role[0])
	}
	if len(tr) < 5 || tr[0].Message != "Hello from your own bot." || !strings.HasPrefix(roles, "aua") ||
		!slices.ContainsFunc(tr, func(e store.TranscriptEntry) bool { return e.Message == "The caller entered 1# on the keypad." }) {
		t.Fatalf("transcript %+v", tr)
	}
}

// TestBotBargeIn: the bot's clear drops the gateway's queued audio at once and
// its pending mark comes back at once.
func TestBotBargeIn(t *testing.T) {
	r := newRig(t, rigOpts{provider: store.ProviderMediaStream, opening: strings.Repeat("A long opening that goes on. ", 4)})
	r.connect("PCMU")
	start := time.Now()
	waitFor(t, "the opening line", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 4000 })
	r.phone.send(tone(800, -10, 600*time.Millisecond))
	waitFor(t, "the clear", 5*time.Second, func() bool { return r.bot.Streams()[0].Clears > 0 && r.call.flushes.Load() > 0 })
	waitFor(t, "the mark back", 5*time.Second, func() bool { return len(r.bot.Streams()[0].Marks) > 0 })
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the mark came back after %v: it waited for the dropped audio", time.Since(start))
	}
}

// TestBotUnreachable: a bot that refuses the upgrade is a provider that cannot
// be reached (503); a reconnect after a drop says it resumes.
func TestBotUnreachable(t *testing.T) {
	r := newRig(t, rigOpts{provider: store.ProviderMediaStream, timeout: 500 * time.Millisecond})
	r.bot.SetRefuse(true)
	_, err := r.conn.Connect(context.Background(), r.info())
	var st *callpath.Refusal
	if !errorsAs(err, &st) || st.Code != 503 || st.Reason != callpath.ProviderDown {
		t.Fatalf("connect: %v", err)
	}
	r.bot.SetRefuse(false)
	r.connect("PCMU")
	<-r.call.Drained()
	waitFor(t, "the opening line's entry", 5*time.Second, func() bool { return len(r.transcript()) > 0 })
	if n := r.bot.DropStreams(); n != 1 {
		t.Fatalf("dropped %d", n)
	}
	waitFor(t, "the second stream", 5*time.Second, func() bool {
		ss := r.bot.Streams()
		return len(ss) == 2 && ss[1].Parameters["cxco_resumed"] == "true"
	})
	if !strings.Contains(r.bot.Streams()[1].Parameters["cxco_conversation_so_far"], "agent: Hello, thanks for calling.") {
		t.Fatalf("resume: %+v", r.bot.Streams()[1].Parameters)
	}
}
