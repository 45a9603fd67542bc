package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

// waitConversation polls a conversation until ok says it is as wanted.
func waitConversation(t *testing.T, g *cxcotest.Gateway, key string, id int64, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := g.Must(200, "GET", fmt.Sprintf("/api/conversations/%d", id), key, nil)
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("conversation %d never got there: %v", id, c)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func convIDs(t *testing.T, g *cxcotest.Gateway, key string) []int64 {
	_, v := g.Do("GET", "/api/conversations/?limit=100", key, nil)
	var ids []int64
	for _, it := range v.(map[string]any)["items"].([]any) {
		ids = append(ids, int64(it.(map[string]any)["id"].(float64)))
	}
	return ids
}

// TestAgentCallSIPp: a SIPp call to a published agent is answered, talks, and ends;
// the API then shows the conversation completed with its duration, a transcript
// whose first entry is the opening line, the caller's entries, the summary, and
// usage that counts it. The same with # ending the call from the agent's side (a
// user turn; the simulator's hook stands in for the LLM that decides to end_call).
func TestAgentCallSIPp(t *testing.T) {
	r := redistest.StartRedis(t)
	sim := cxcotest.StartSim(t, "--hooks", elevenlabssim.HookHashEndsCall)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, ProviderURL: sim})
	tn := g.NewTenant("Acme")
	g.AddNumber("+27211234567", "ZA", false)
	agentID, number := g.PublishAgent(tn, "Sales Assistant", "ZA", map[string]any{"temperature": 0.7})

	sipp(t, g, "uac_agent.xml", number)
	sipp(t, g, "uac_dtmf_hash.xml", number)

	ids := convIDs(t, g, tn.UserKey)
	if len(ids) != 2 {
		t.Fatalf("conversations: %v", ids)
	}
	done := func(c map[string]any) bool { return c["status"] != "in_progress" && c["transcript_summary"] != nil }
	hashCall := waitConversation(t, g, tn.UserKey, ids[0], done) // newest first
	talkCall := waitConversation(t, g, tn.UserKey, ids[1], done)

	for name, c := range map[string]map[string]any{"caller hangs up": talkCall, "# from the caller": hashCall} {
		if c["status"] != "completed" || c["duration_seconds"].(float64) < 1 || c["source"] != "elevenlabs" ||
			c["external_conversation_id"] == nil || c["caller_number"] != "+27821234567" {
			t.Errorf("%s: %v", name, c)
		}
		tr := c["transcript"].([]any)
		if len(tr) == 0 || tr[0].(map[string]any)["role"] != "agent" || tr[0].(map[string]any)["message"] != "Hello, this is Sales Assistant. How can I help?" {
			t.Errorf("%s: transcript %v", name, tr)
		}
		if c["message_count"].(float64) != float64(len(tr)) {
			t.Errorf("%s: message_count %v for %d entries", name, c["message_count"], len(tr))
		}
		rtp := c["metadata_"].(map[string]any)["rtp"].(map[string]any)
		if rtp["packets_received"].(float64) < 5 || rtp["played_frames"].(float64) < 25 {
			t.Errorf("%s: RTP %v", name, rtp)
		}
	}
	// The talking call was rated (a clean loopback call: SIPp's pacing is all
	// the jitter there is), in its record and in the list; the # call sent only
	// digits, so there is no audio to rate. Not poor (R >= 70, MOS >= 3.6): a
	// busy machine delivers a few packets late, and 2 concealed frames took a
	// run at load 5-9 from 4.3 to 3.83.
	rtp := talkCall["metadata_"].(map[string]any)["rtp"].(map[string]any)
	q, _ := talkCall["audio_quality"].(map[string]any)
	if q == nil || q["poor"] != false || q["mos"].(float64) < 3.6 || q["mos"] != rtp["mos"] || q["r_factor"] != rtp["r_factor"] {
		t.Errorf("audio quality %v, rtp %v", q, rtp)
	}
	if d := rtp["jitter_depth_avg_ms"].(float64); d < 20 || d > rtp["jitter_depth_max_ms"].(float64) || rtp["concealed_ms"] == nil || rtp["late_ms"] == nil {
		t.Errorf("rtp %v", rtp)
	}
	if hashCall["audio_quality"] != nil {
		t.Errorf("digits only, yet rated: %v", hashCall["audio_quality"])
	}
	_, list := g.Do("GET", "/api/conversations/", tn.UserKey, nil)
	for _, it := range list.(map[string]any)["items"].([]any) {
		if m := it.(map[string]any); m["id"] == talkCall["id"] && fmt.Sprint(m["audio_quality"]) != fmt.Sprint(q) {
			t.Errorf("the list shows audio quality %v, the conversation %v", m["audio_quality"], q)
		}
	}
	if n, sum := metric(t, g, "cxco_call_mos_count"), metric(t, g, "cxco_call_mos_sum"); n != 1 || math.Abs(sum-rtp["mos"].(float64)) > 0.005 {
		t.Errorf("MOS histogram: %v calls, sum %v; want the talking call's %v", n, sum, rtp["mos"])
	}
	if talkCall["end_reason"] != "caller_hangup" || hashCall["end_reason"] != "agent_hangup" {
		t.Errorf("end reasons: %v, %v", talkCall["end_reason"], hashCall["end_reason"])
	}
	var users int
	for _, e := range talkCall["transcript"].([]any) {
		if e.(map[string]any)["role"] == "user" {
			users++
		}
	}
	if users == 0 {
		t.Errorf("no caller entries in %v", talkCall["transcript"])
	}
	// Usage counts both calls, and agrees with the records.
	wantSecs := talkCall["duration_seconds"].(float64) + hashCall["duration_seconds"].(float64)
	u := g.Must(200, "GET", fmt.Sprintf("/api/agents/%d/usage", agentID), tn.UserKey, nil)
	v := u["voice"].(map[string]any)
	if v["total_conversations"].(float64) != 2 || math.Abs(v["total_minutes"].(float64)-math.Round(wantSecs/60*100)/100) > 1e-9 {
		t.Errorf("agent usage %v, want 2 conversations and %.0f s", v, wantSecs)
	}
	s := g.Must(200, "GET", "/api/usage/summary", tn.UserKey, nil)
	if s["voice"].(map[string]any)["total_conversations"].(float64) != 2 || s["agents_active"].(float64) != 1 {
		t.Errorf("usage summary %v", s)
	}
}

// TestAgentCallAudio: through the binary, a Go phone hears the opening line (the
// simulator's 440 Hz), talks over it (a barge-in) and hears its own utterance
// echoed back (1 kHz): the reply after a barge-in is heard, measured on the RTP the
// phone receives, whichever event id the provider gives that reply.
func TestAgentCallAudio(t *testing.T) {
	for _, mode := range []elevenlabssim.InterruptionIDs{elevenlabssim.ReuseID, elevenlabssim.InterruptedID} {
		t.Run(string(mode), func(t *testing.T) { agentCallAudio(t, mode) })
	}
}

func agentCallAudio(t *testing.T, mode elevenlabssim.InterruptionIDs) {
	sim := cxcotest.StartSim(t, "--interruption-ids", string(mode))
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{ProviderURL: sim})
	tn := g.NewTenant("Audio")
	g.AddNumber("+27211230001", "ZA", false)
	_, number := g.PublishAgent(tn, "Echo", "ZA", map[string]any{"audio_format": "pcm_16000"})
	ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), number, "PCMA")
	if code != 200 {
		t.Fatalf("agent answered %d", code)
	}
	// The phone listens until half a second of the opening line has played, then
	// talks over it (a barge-in).
	var opening []int16
	stop := ph.KeepSilent()
	ph.WaitAudio(15*time.Second, func(pcm []int16) bool {
		if first, last := audiotest.LoudSpan(pcm, 160, -30); first >= 0 && last-first >= 4000 {
			opening = pcm[first:last]
		}
		return opening != nil
	})
	stop()
	if opening == nil {
		t.Fatal("no opening line heard")
	}
	if f := audiotest.DominantFrequency(opening, 8000); math.Abs(f-440) > 5 {
		t.Fatalf("opening line at %.1f Hz", f)
	}
	before := len(ph.Audio())
	ph.SendAudio(cxcotest.Tone(1000, -10, time.Second))
	// What follows: the opening line's last moments until the barge-in stops it,
	// then the echo (1 s) once the utterance has ended; its second half is echo.
	echo := ph.Heard(before, time.Second, 300*time.Millisecond, 15*time.Second)
	if echo == nil {
		t.Fatal("utterance not echoed")
	}
	if f := audiotest.DominantFrequency(echo[len(echo)/2:], 8000); math.Abs(f-1000) > 5 {
		t.Fatalf("echo at %.1f Hz", f)
	}
	ph.Hangup()
	convs := cxcotest.SimConversations(t, sim)
	if len(convs) != 1 || convs[0]["interruptions"].(float64) != 1 || convs[0]["signed"] != true {
		t.Fatalf("the provider's conversation: %v", convs)
	}
}

// TestCrashMidCall: the gateway is killed mid-call; everything said so far is
// already in Redis.
func TestCrashMidCall(t *testing.T) {
	r := redistest.StartRedis(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL})
	tn := g.NewTenant("Crash")
	g.AddNumber("+27211239999", "ZA", false)
	_, number := g.PublishAgent(tn, "Fragile", "ZA", nil)
	ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), number, "PCMU")
	if code != 200 {
		t.Fatalf("answered %d", code)
	}
	ph.SendAudio(make([]int16, 8000)) // the opening line plays
	ph.SendAudio(cxcotest.Tone(1000, -10, time.Second))
	ph.SendAudio(make([]int16, 8000*12/10)) // the answer comes
	ids := convIDs(t, g, tn.UserKey)
	before := waitConversation(t, g, tn.UserKey, ids[0], func(c map[string]any) bool { return len(c["transcript"].([]any)) >= 3 })
	g.Proc.Signal(syscall.SIGKILL)
	g.Proc.Wait(10 * time.Second)

	// Read Redis directly: the process is gone.
	sealer, _ := store.NewSealer(store.GenerateSecretKey())
	st, err := store.Open(context.Background(), store.Options{URL: r.URL, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tr, err := st.Transcript(context.Background(), tn.CompanyID, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) < len(before["transcript"].([]any)) || tr[0].Role != "agent" || !strings.Contains(tr[1].Message, "caller spoke") {
		t.Fatalf("transcript after the crash: %+v", tr)
	}
	c, _ := st.GetConversation(context.Background(), tn.CompanyID, ids[0])
	if c.Status != store.ConvInProgress {
		t.Fatalf("status %s", c.Status)
	}
}
