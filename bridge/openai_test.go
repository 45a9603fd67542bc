package bridge_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/bridge/openai/openaisim"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/store"
)

// TestOpenAIConversation: an agent on OpenAI Realtime, over a real websocket to
// the simulator. The session is configured as the reference describes (µ-law
// both ways, the agent's instructions and voice, server VAD, transcription,
// the gateway's tools); the opening line is the first response and is heard
// (the simulator's 440 Hz); an utterance is heard back; # on the keypad is a
// user turn on which (test hook) the model says goodbye and calls end_call;
// the call ends after the farewell; transcripts and the token usage of every
// response.done are recorded.
func TestOpenAIConversation(t *testing.T) {
	for _, beta := range []bool{false, true} {
		name := "ga audio events"
		if beta {
			name = "beta audio events"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rigOpts{provider: store.ProviderOpenAI, opening: "Hi there, this is Acme.",
				openai: openaisim.Options{Hooks: []string{openaisim.HookHashEndsCall}, BetaAudioEvents: beta},
				config: map[string]any{"turn_detection": "semantic_vad", "keypad": map[string]any{"inter_digit_timeout_ms": 300},
					"transfer": map[string]any{"destinations": []any{map[string]any{"number": "+27215550100", "condition": "asks for sales"}}}}})
			r.connect("PCMU")
			start := time.Now()
			waitFor(t, "the opening line", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 4000 })
			if f := audiotest.DominantFrequency(loud(r.phone.audioSince(start))[:4000], 8000); math.Abs(f-440) > 5 {
				t.Fatalf("opening line at %.1f Hz, want the simulator's 440 Hz", f)
			}
			s := r.oai.Sessions()[0]
			audio := s.Config["audio"].(map[string]any)
			in, out := audio["input"].(map[string]any), audio["output"].(map[string]any)
			if in["format"].(map[string]any)["type"] != "audio/pcmu" || out["format"].(map[string]any)["type"] != "audio/pcmu" ||
				in["turn_detection"].(map[string]any)["type"] != "semantic_vad" || in["transcription"] == nil ||
				!strings.HasPrefix(s.Config["instructions"].(string), "You test.") || s.Key != "sk-test" {
				t.Fatalf("session: %+v", s.Config)
			}
			var tools []string
			for _, tl := range s.Config["tools"].([]any) {
				tools = append(tools, tl.(map[string]any)["name"].(string))
			}
			if !slices.Equal(tools, []string{"end_call", "transfer_call"}) {
				t.Fatalf("tools %v", tools)
			}
			<-r.call.Drained()
			spoke := time.Now()
			r.phone.send(tone(1000, -10, time.Second))
			r.phone.send(make([]int16, 8000*7/10))
			waitFor(t, "the echoed utterance", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(spoke))) >= 4000 })
			if f := audiotest.DominantFrequency(loud(r.phone.audioSince(spoke)), 8000); math.Abs(f-1000) > 5 {
				t.Fatalf("echo at %.1f Hz", f)
			}
			<-r.call.Drained()
			r.digits("#")
			select {
			case <-r.sess.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the agent did not end the call after #")
			}
			if e := r.sess.End(); e.Reason != callpath.AgentHangup {
				t.Fatalf("end %+v", e)
			}
			r.end(callpath.AgentHangup)
			s = r.oai.Sessions()[0]
			if !slices.Contains(s.UserTexts, "The caller entered # on the keypad.") || len(s.FunctionCalls) != 1 || s.FunctionCalls[0].Name != "end_call" ||
				len(s.FunctionOutputs) != 1 || s.Errors != nil {
				t.Fatalf("simulator saw %+v", s)
			}
			tr := r.transcript()
			if len(tr) < 5 || tr[0].Role != store.RoleAgent || tr[0].Message != "Hi there, this is Acme." {
				t.Fatalf("transcript %+v", tr)
			}
			var user bool
			for _, e := range tr {
				user = user || (e.Role == store.RoleUser && strings.HasPrefix(e.Message, "(caller spoke"))
			}
			if !user {
				t.Fatalf("no transcription of the caller: %+v", tr)
			}
			c, err := r.st.GetConversation(context.Background(), r.co.ID, r.conv.ID)
			if err != nil {
				t.Fatal(err)
			}
			rt, _ := c.Metadata["llm_usage"].(map[string]any)["realtime"].(map[string]any)
			if c.Metadata["llm_tokens"] == nil || rt["responses"] != float64(3) || rt["output_audio"] == nil || c.Source != store.ProviderOpenAI {
				t.Fatalf("metadata_ %v, source %q", c.Metadata, c.Source)
			}
		})
	}
}

// TestOpenAIBargeIn: the caller talks over the agent's reply: the queued audio
// is dropped at once, and the item is truncated at what the caller heard (less
// than the audio sent, which the simulator checks), so the model knows what was
// not said; the agent's transcript entry says it was cut off.
func TestOpenAIBargeIn(t *testing.T) {
	long := strings.Repeat("This is a long opening line that goes on and on. ", 3)
	r := newRig(t, rigOpts{provider: store.ProviderOpenAI, opening: long})
	r.connect("PCMU")
	start := time.Now()
	waitFor(t, "the opening line to play", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 8000 })
	heardFrom := time.Now()
	r.phone.send(tone(800, -10, 600*time.Millisecond))
	waitFor(t, "the truncation", 5*time.Second, func() bool {
		s := r.oai.Sessions()[0]
		return len(s.Truncations) > 0
	})
	tr := r.oai.Sessions()[0].Truncations[0]
	played := heardFrom.Sub(start)
	if !tr.OK || tr.AudioEndMS >= tr.AudioMS || time.Duration(tr.AudioEndMS)*time.Millisecond < played-time.Second {
		t.Fatalf("truncation %+v; the caller had heard at least %v", tr, played)
	}
	if r.call.flushes.Load() < 1 {
		t.Fatal("nothing was flushed")
	}
	r.phone.send(make([]int16, 8000))
	waitFor(t, "the cut-off entry", 5*time.Second, func() bool {
		for _, e := range r.transcript() {
			if e.Role == store.RoleAgent && strings.Contains(e.Message, "[interrupted after ") {
				return true
			}
		}
		return false
	})
}

// TestOpenAIHangupMidReply: the caller hangs up while the agent is still
// speaking, before OpenAI sent that reply's whole transcript (it comes once the
// reply's audio is done): what it had sent is recorded, marked cut off.
func TestOpenAIHangupMidReply(t *testing.T) {
	long := strings.Repeat("This is a long opening line that goes on and on. ", 4)
	r := newRig(t, rigOpts{provider: store.ProviderOpenAI, opening: long})
	r.connect("PCMU")
	start := time.Now()
	waitFor(t, "the opening line to play", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 4000 })
	r.end(callpath.CallerHangup)
	tr := r.transcript()
	if len(tr) != 1 || tr[0].Role != store.RoleAgent || !strings.HasPrefix(tr[0].Message, "This is a long opening line") ||
		!strings.HasSuffix(tr[0].Message, "[cut off: the call ended]") {
		t.Fatalf("transcript: %+v", tr)
	}
}

// TestOpenAIReconnect: the socket drops mid-call; the gateway opens a new
// session, gives it the conversation so far as a system message, and the agent
// does not greet again.
func TestOpenAIReconnect(t *testing.T) {
	r := newRig(t, rigOpts{provider: store.ProviderOpenAI})
	r.connect("PCMU")
	<-r.call.Drained()
	waitFor(t, "the opening line's entry", 5*time.Second, func() bool { return len(r.transcript()) > 0 })
	if n := r.oai.DropSessions(); n != 1 {
		t.Fatalf("dropped %d", n)
	}
	waitFor(t, "the second session", 5*time.Second, func() bool { return len(r.oai.Sessions()) == 2 && r.oai.Sessions()[1].Updates > 0 })
	s := r.oai.Sessions()[1]
	waitFor(t, "the digest", 5*time.Second, func() bool { return len(r.oai.Sessions()[1].SystemTexts) > 0 })
	s = r.oai.Sessions()[1]
	if !strings.Contains(s.SystemTexts[0], "agent: Hello, thanks for calling.") || s.Responses != 0 {
		t.Fatalf("second session: %+v", s)
	}
	select {
	case <-r.sess.Done():
		t.Fatalf("the call ended: %+v", r.sess.End())
	default:
	}
}
