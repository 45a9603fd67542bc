package bridge_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/store"
)

func tone(freq, dBFS float64, d time.Duration) []int16 { return audiotest.Sine(8000, freq, dBFS, d) }

// loud keeps the 20 ms frames of pcm louder than -35 dBFS.
func loud(pcm []int16) []int16 {
	var out []int16
	for i := 0; i+160 <= len(pcm); i += 160 {
		if audiotest.RMSDBFS(pcm[i:i+160]) > -35 {
			out = append(out, pcm[i:i+160]...)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) transcript() []store.TranscriptEntry {
	tr, err := r.st.Transcript(context.Background(), r.co.ID, r.conv.ID)
	if err != nil {
		r.t.Fatal(err)
	}
	return tr
}

// TestConversation: the caller hears the opening line (the simulator's 440 Hz), says
// something (1 kHz) and hears it back, presses # (a user turn; the test hook makes
// the agent run end_call) and the call ends on the provider's close, after the
// farewell has played, whichever order the end_call tool response and the
// farewell come in; the transcript is in Redis in order as it happened, and the
// post-call analysis arrives.
func TestConversation(t *testing.T) {
	for _, tc := range []struct {
		format, codec string
		order         elevenlabssim.EndCallOrder
	}{{"", "PCMU", elevenlabssim.ToolResponseFirst}, {"ulaw_8000", "PCMA", elevenlabssim.FarewellFirst}, {"pcm_16000", "PCMU", elevenlabssim.ToolResponseFirst}} {
		t.Run(tc.format+"/"+tc.codec+"/"+string(tc.order), func(t *testing.T) {
			r := newRig(t, rigOpts{format: tc.format, opening: "Hi there! Thanks for calling Acme Corp. How can I help you today?",
				sim: elevenlabssim.Options{EndCallOrder: tc.order, Hooks: []string{elevenlabssim.HookHashEndsCall}}})
			r.connect(tc.codec)
			start := time.Now()
			waitFor(t, "the opening line", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 8000 })
			opening := loud(r.phone.audioSince(start))
			if f := audiotest.DominantFrequency(opening[:8000], 8000); math.Abs(f-440) > 5 {
				t.Fatalf("opening line at %.1f Hz, want the simulator's 440 Hz", f)
			}
			// Let the opening line finish, then speak.
			<-r.call.Drained()
			spoke := time.Now()
			r.phone.send(tone(1000, -10, time.Second))
			r.phone.send(make([]int16, 8000*7/10))
			// The echo of what the provider heard (a loaded machine may cut it short).
			waitFor(t, "the provider's answer", 10*time.Second, func() bool {
				tr := r.sim.Conversations()[0].Transcript
				return len(tr) >= 3 && strings.HasPrefix(tr[len(tr)-1].Message, "I heard you for")
			})
			waitFor(t, "the echoed utterance", 10*time.Second, func() bool { return len(loud(r.phone.audioSince(spoke))) >= 800 })
			echo := loud(r.phone.audioSince(spoke))
			if f := audiotest.DominantFrequency(echo, 8000); math.Abs(f-1000) > 5 {
				t.Fatalf("echoed utterance at %.1f Hz, want 1000", f)
			}
			<-r.call.Drained()
			pressed := time.Now()
			r.phone.keys(11) // '#'
			select {
			case reason := <-r.call.hangup:
				t.Fatalf("unexpected Hangup %q", reason)
			case <-r.sess.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the agent did not end the call after #")
			}
			if e := r.sess.End(); e.Reason != callpath.AgentHangup || e.Failed() {
				t.Fatalf("end: %+v", e)
			}
			// The whole farewell (31 characters: 1.86 s of tone) played before the end.
			farewell := 8000 * 17 / 10
			waitFor(t, "the farewell on the RTP", 2*time.Second, func() bool { return len(loud(r.phone.audioSince(pressed))) >= farewell })
			r.end(callpath.AgentHangup)
			tr := r.transcript()
			if len(tr) < 4 || tr[0].Role != "agent" || tr[0].Message != "Hi there! Thanks for calling Acme Corp. How can I help you today?" || tr[0].Timestamp > 1 { // the opening line comes as the call is answered
				t.Fatalf("transcript: %+v", tr)
			}
			var user, agent int
			for i, e := range tr {
				if i > 0 && e.Timestamp < tr[i-1].Timestamp {
					t.Fatalf("transcript out of order: %+v", tr)
				}
				if e.Role == "user" {
					user++
				} else {
					agent++
				}
			}
			if user < 1 || agent < 3 {
				t.Fatalf("transcript has %d user and %d agent entries: %+v", user, agent, tr)
			}
			convs := r.sim.Conversations()
			if len(convs) != 1 || !slices.Equal(convs[0].UserMessages, []string{"The caller entered # on the keypad."}) ||
				!slices.Equal(convs[0].SystemTools, []string{"end_call"}) || len(convs[0].ContextualUpdates) != 0 {
				t.Fatalf("the provider did not get # as a user turn, or did not run end_call: %+v", convs)
			}
			ini := convs[0].Initiation
			if ini == nil || ini.DynamicVariables["caller_number"] != "+27820000002" || ini.DynamicVariables["called_number"] != "+27210000001" ||
				ini.Override != nil || ini.CustomLLMExtraBody != nil || !convs[0].Signed {
				t.Fatalf("initiation: %+v (signed %v)", ini, convs[0].Signed)
			}
			waitFor(t, "the post-call analysis", 10*time.Second, func() bool {
				c, _ := r.st.GetConversation(context.Background(), r.co.ID, r.conv.ID)
				return c.TranscriptSummary != nil && c.CallSuccessful != nil && c.ExternalConversationID != nil
			})
		})
	}
}

// TestBargeIn: when the provider interrupts its own speech because the caller talks
// over it, every queued frame is dropped at once: the audio the caller hears stops
// within one frame of the interruption.
func TestBargeIn(t *testing.T) {
	long := strings.Repeat("This is a long opening line that goes on and on. ", 3)
	r := newRig(t, rigOpts{opening: long})
	r.connect("PCMU")
	start := time.Now()
	waitFor(t, "the opening line to play", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 4000 })
	// Talk over it.
	r.phone.send(tone(800, -10, 600*time.Millisecond))
	waitFor(t, "the interruption", 5*time.Second, func() bool { return r.call.flushes.Load() > 0 })
	sent := r.call.sentAtFlush.Load()
	r.phone.send(make([]int16, 1600))
	// The packets the stream sent after the flush, but the first (one frame may
	// have been on its way), carry silence until the agent's answer to the
	// interruption starts, which is after the caller's utterance ends and 500 ms
	// of silence: the next 8 (160 ms of the stream) are silent. They are counted
	// by sequence number from the stream's first packet, not by when they
	// arrived: on a busy machine the phone reads late, and a packet sent before
	// the flush may be read after it.
	const window = 8
	waitFor(t, "the packets after the interruption", 5*time.Second, func() bool {
		return uint64(len(r.phone.packets())) >= sent+1+window
	})
	pk := r.phone.packets()
	seq0 := pk[0].seq
	for _, p := range pk {
		if int16(p.seq-seq0) < 0 {
			seq0 = p.seq // the first packet arrived after another
		}
	}
	var after, silent int
	for _, p := range pk {
		if i := uint64(uint16(p.seq - seq0)); i > sent && i <= sent+window {
			after++
			if audiotest.RMSDBFS(p.pcm) < -50 {
				silent++
			}
		}
	}
	if after != window || silent != after {
		t.Fatalf("of the %d packets after the interruption (from packet %d), %d arrived and %d were silent", window, sent+1, after, silent)
	}
	if n := r.sim.Conversations()[0].Interruptions; n < 1 {
		t.Fatalf("the provider saw %d interruptions", n)
	}
}

// TestReconnect: the provider's socket drops mid-call; the gateway reconnects (a
// new signed URL, the upgrade and the metadata) and the conversation goes on (the agent does not greet again, and answers
// the next utterance).
func TestReconnect(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.connect("PCMU")
	<-r.call.Drained()
	waitFor(t, "the opening line", 5*time.Second, func() bool { return len(r.transcript()) >= 1 })
	if n := r.sim.DropConversations(); n != 1 {
		t.Fatalf("dropped %d conversations", n)
	}
	waitFor(t, "a second provider conversation", 6*time.Second, func() bool {
		cs := r.sim.Conversations()
		return len(cs) == 2 && cs[1].Initiation != nil
	})
	second := r.sim.Conversations()[1]
	if first := second.Initiation.Override["agent"].(map[string]any)["first_message"]; first != "" {
		t.Fatalf("the reconnected conversation greets again: %q", first)
	}
	spoke := time.Now()
	r.phone.send(tone(1000, -10, 800*time.Millisecond))
	r.phone.send(make([]int16, 6400))
	waitFor(t, "an answer after the reconnect", 5*time.Second, func() bool { return len(loud(r.phone.audioSince(spoke))) >= 2000 })
	select {
	case <-r.sess.Done():
		t.Fatalf("the call ended: %+v", r.sess.End())
	default:
	}
}

// TestReconnectFails: when the provider stays away, the caller hears a short apology
// tone and the call ends as failed.
func TestReconnectFails(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.connect("PCMU")
	<-r.call.Drained()
	r.sim.SetRefuse(true)
	failed := time.Now()
	r.sim.DropConversations()
	select {
	case <-r.sess.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end")
	}
	if e := r.sess.End(); e.Reason != callpath.ProviderError || !e.Failed() {
		t.Fatalf("end: %+v", e)
	}
	apology := loud(r.phone.audioSince(failed))
	if len(apology) < 2000 {
		t.Fatalf("no apology tone (%d loud samples)", len(apology))
	}
	f := audiotest.DominantFrequency(apology[:1600], 8000)
	if math.Abs(f-620) > 10 && math.Abs(f-480) > 10 {
		t.Fatalf("apology tone at %.0f Hz", f)
	}
}

// TestProviderUnavailable: a provider that refuses, or answers too slowly, fails the
// connect with 503 within --provider-timeout.
func TestProviderUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*elevenlabssim.Server)
	}{
		{"refused", func(s *elevenlabssim.Server) { s.SetRefuse(true) }},
		{"too slow", func(s *elevenlabssim.Server) { s.SetConnectDelay(3 * time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{timeout: 500 * time.Millisecond})
			tc.setup(r.sim)
			start := time.Now()
			_, err := r.conn.Connect(context.Background(), r.info())
			var st *callpath.Refusal
			if !errorsAs(err, &st) || st.Code != 503 || st.Reason != callpath.ProviderDown {
				t.Fatalf("connect: %v", err)
			}
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Fatalf("gave up after %s, want about the 500 ms timeout", d)
			}
		})
	}
}
