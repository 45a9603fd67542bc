package providersim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
)

// checkTone measures pcm (at rate) as the tone freq at about level dBFS.
func checkTone(t *testing.T, what string, pcm []int16, rate int, freq, level float64) {
	t.Helper()
	if got := audiotest.DominantFrequency(pcm, float64(rate)); math.Abs(got-freq) > 2 {
		t.Errorf("%s: dominant frequency %.1f Hz, want %.0f Hz", what, got, freq)
	}
	if got := audiotest.ToneLevelDBFS(pcm, float64(rate), freq); math.Abs(got-level) > 1.5 {
		t.Errorf("%s: level %.1f dBFS, want %.0f dBFS", what, got, level)
	}
}

func TestOpeningLine(t *testing.T) {
	long := strings.Repeat("This opening line is long. ", 4) // 108 characters: capped at 4 s
	cases := []struct {
		name, format, first string
		init                map[string]any
		wantText            string
		wantDur             time.Duration
	}{
		{name: "agent first_message ulaw_8000", format: "ulaw_8000", first: "Hello, how can I help?",
			wantText: "Hello, how can I help?", wantDur: 22 * 60 * time.Millisecond},
		{name: "agent first_message pcm_16000", format: "pcm_16000", first: "Hello, how can I help?",
			wantText: "Hello, how can I help?", wantDur: 22 * 60 * time.Millisecond},
		{name: "default format is ulaw_8000", format: "", first: "Hi.", wantText: "Hi.", wantDur: 800 * time.Millisecond},
		{name: "override with a dynamic variable", format: "ulaw_8000", first: "Agent line.",
			init:     initiation(ptr("You called from {{caller_number}}.")),
			wantText: "You called from +15550001111.", wantDur: 29 * 60 * time.Millisecond},
		{name: "long line is capped at 4 s", format: "pcm_16000", first: long, wantText: long, wantDur: 4 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			id := e.createAgent(agentBody(tc.first, tc.format))
			c := e.dial(id, tc.init)
			f, _ := parseFormat(tc.format)
			c.f, c.out = f, f
			if c.ws.Subprotocol() != "convai" {
				t.Errorf("subprotocol %q, want convai", c.ws.Subprotocol())
			}
			meta := c.next()
			if meta.Type != "conversation_initiation_metadata" || meta.Meta == nil {
				t.Fatalf("first message %s, want conversation_initiation_metadata", meta.raw)
			}
			if !strings.HasPrefix(meta.Meta.ConversationID, "conv_") || meta.Meta.In != f.name || meta.Meta.Out != f.name {
				t.Errorf("metadata %+v, want conv_... and %s both ways", *meta.Meta, f.name)
			}
			r := c.readResponse(tc.wantDur)
			if r.text != tc.wantText {
				t.Errorf("agent_response %q, want %q", r.text, tc.wantText)
			}
			if got := f.sampleTime(int64(len(r.pcm))); got != tc.wantDur {
				t.Errorf("audio lasts %v, want %v", got, tc.wantDur)
			}
			checkTone(t, "opening line", r.pcm, f.rate, 440, -12)
			for i, d := range r.chunks {
				if d < 100*time.Millisecond && i < len(r.chunks)-1 || d > 500*time.Millisecond {
					t.Errorf("chunk %d lasts %v, want 100-500 ms", i, d)
				}
				if i > 0 && r.eventIDs[i] <= r.eventIDs[i-1] {
					t.Errorf("audio event_ids %v do not increase", r.eventIDs)
				}
			}
			if len(r.chunks) > 2 && r.chunks[0] == r.chunks[1] {
				t.Errorf("chunks all alike: %v", r.chunks)
			}
			if tc.init != nil {
				conv, _ := e.sim.ConversationByID(meta.Meta.ConversationID)
				in := conv.Initiation
				if in == nil || in.DynamicVariables["caller_number"] != "+15550001111" || in.CustomLLMExtraBody["temperature"] != 0.4 ||
					deref(in.VoiceID) != "voice-9" || deref(in.Prompt) != "Be brief." || deref(in.Language) != "en" {
					t.Errorf("initiation kept as %+v", in)
				}
			}
		})
	}
}

// TestUtteranceEcho sends 1 s of a 1 kHz tone and 1 s of silence, faster than
// real time: the detector runs on audio time.
func TestUtteranceEcho(t *testing.T) {
	cases := []struct{ name, in, out string }{
		{"ulaw_8000", "ulaw_8000", "ulaw_8000"},
		{"pcm_16000", "pcm_16000", "pcm_16000"},
		{"ulaw_8000 in, pcm_16000 out", "ulaw_8000", "pcm_16000"},
		{"pcm_16000 in, ulaw_8000 out", "pcm_16000", "ulaw_8000"},
		{"pcm_8000", "pcm_8000", "pcm_8000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			body := agentBody("Hello there.", tc.in)
			body["conversation_config"].(map[string]any)["tts"].(map[string]any)["agent_output_audio_format"] = tc.out
			id := e.createAgent(body)
			c := e.dial(id, initiation(ptr(""))) // an empty first message: the agent waits
			c.f, _ = parseFormat(tc.in)
			c.out, _ = parseFormat(tc.out)
			c.expect("conversation_initiation_metadata")
			rate := c.f.rate
			// A 60 ms blip first: too short to be an utterance.
			c.sendPCM(concat(tone(rate, 1000, 60*time.Millisecond), silence(rate, time.Second),
				tone(rate, 1000, time.Second), silence(rate, time.Second)), 20*time.Millisecond)
			ut := c.expect("user_transcript")
			if ut.UserTranscript.Text != "(caller spoke 1.0 s)" {
				t.Errorf("user_transcript %q, want (caller spoke 1.0 s)", ut.UserTranscript.Text)
			}
			r := c.readResponse(time.Second)
			if r.text != "I heard you for 1.0 seconds." {
				t.Errorf("agent_response %q", r.text)
			}
			if got := c.out.sampleTime(int64(len(r.pcm))); got != time.Second {
				t.Errorf("echo lasts %v, want 1s", got)
			}
			checkTone(t, "echo", r.pcm[c.out.samples(50*time.Millisecond):c.out.samples(950*time.Millisecond)], c.out.rate, 1000, -17)
			if ut.UserTranscript.EventID >= r.eventIDs[0] {
				t.Errorf("user_transcript event_id %d not before the audio's %d", ut.UserTranscript.EventID, r.eventIDs[0])
			}
		})
	}
}

func TestBargeIn(t *testing.T) {
	e := newEnv(t, Options{})
	first := "Welcome to the test line. This is a very long opening message, so that you can interrupt it."
	id := e.createAgent(agentBody(first, "ulaw_8000"))
	c := e.dial(id, nil)
	c.expect("conversation_initiation_metadata")
	var lastAudio int64
	var heard time.Duration
	ev := c.expect("audio")
	lastAudio, heard = ev.Audio.EventID, c.out.duration(len(ev.Audio.B64)*3/4)
	// The caller talks over the agent at once: 400 ms of tone.
	c.sendPCM(tone(8000, 1000, 400*time.Millisecond), 20*time.Millisecond)
	var intr event
	for intr.Type == "" {
		switch ev := c.nextNoPing(); ev.Type {
		case "audio":
			lastAudio = ev.Audio.EventID
			heard += c.out.duration(len(ev.Audio.B64) * 3 / 4)
		case "agent_response":
		case "interruption":
			intr = ev
		default:
			t.Fatalf("unexpected %s", ev.raw)
		}
	}
	if intr.Interruption.EventID != lastAudio {
		t.Errorf("interruption event_id %d, want the last audio's %d", intr.Interruption.EventID, lastAudio)
	}
	if heard >= 4*time.Second {
		t.Errorf("the whole opening line (%v) was sent before the interruption", heard)
	}
	corr := c.expect("agent_response_correction").Correction
	if corr.Original != first || len(corr.Corrected) >= len(first) ||
		!strings.HasPrefix(first, strings.TrimSuffix(corr.Corrected, "...")) {
		t.Errorf("correction %+v", corr)
	}
	// The caller stops: the utterance is answered, with later event_ids.
	c.sendPCM(silence(8000, 600*time.Millisecond), 20*time.Millisecond)
	ut := c.expect("user_transcript") // no audio of the old response in between
	if ut.UserTranscript.Text != "(caller spoke 0.4 s)" {
		t.Errorf("user_transcript %q", ut.UserTranscript.Text)
	}
	r := c.readResponse(400 * time.Millisecond)
	if r.eventIDs[0] <= intr.Interruption.EventID {
		t.Errorf("echo event_id %d not after the interruption's %d", r.eventIDs[0], intr.Interruption.EventID)
	}
	c.ws.Close()
	conv := e.waitEnded(e.sim.Conversations()[0].ID)
	if conv.Interruptions != 1 || len(conv.Transcript) != 3 || !conv.Transcript[0].Interrupted ||
		conv.Transcript[0].Message != corr.Corrected || deref(conv.Transcript[0].OriginalMessage) != first {
		t.Errorf("transcript %+v, interruptions %d", conv.Transcript, conv.Interruptions)
	}
}

// TestNoBargeInAfterPlayback: speech after the agent's audio has played (by the
// caller's audio clock) is an ordinary turn.
func TestNoBargeInAfterPlayback(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.createAgent(agentBody("Hi.", "ulaw_8000"))
	c := e.dial(id, nil)
	c.expect("conversation_initiation_metadata")
	c.readResponse(800 * time.Millisecond)
	c.sendPCM(concat(silence(8000, time.Second), tone(8000, 700, 300*time.Millisecond), silence(8000, 600*time.Millisecond)), 20*time.Millisecond)
	if ev := c.nextNoPing(); ev.Type != "user_transcript" {
		t.Fatalf("got %s, want user_transcript", ev.raw)
	}
}

func TestPing(t *testing.T) {
	e := newEnv(t, Options{PingInterval: 20 * time.Millisecond})
	id := e.createAgent(agentBody("", "ulaw_8000"))
	c := e.dial(id, nil)
	c.expect("conversation_initiation_metadata")
	var last int64
	for i := 0; ; i++ {
		ev := c.next()
		if ev.Type != "ping" {
			t.Fatalf("got %s, want ping", ev.raw)
		}
		if ev.Ping.EventID <= last {
			t.Errorf("ping event_id %d after %d", ev.Ping.EventID, last)
		}
		last = ev.Ping.EventID
		if i == 0 && ev.Ping.PingMS != nil {
			t.Errorf("first ping_ms %d, want null", *ev.Ping.PingMS)
		}
		if ev.Ping.PingMS != nil {
			if *ev.Ping.PingMS < 0 || *ev.Ping.PingMS > 5000 {
				t.Errorf("ping_ms %d", *ev.Ping.PingMS)
			}
			break
		}
		if i > 200 {
			t.Fatal("ping_ms never measured")
		}
		c.send(map[string]any{"type": "pong", "event_id": ev.Ping.EventID})
	}
	conv := e.sim.Conversations()[0]
	if conv.PingRTTMillis == nil {
		t.Error("conversation has no ping RTT")
	}
}

func TestHashEndsCall(t *testing.T) {
	cases := []struct {
		name   string
		result bool // the client answers the tool call
		text   string
	}{
		{"client confirms", true, "The caller pressed the key # on the keypad."},
		{"client says nothing: the tool timeout closes", false, "DTMF #"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{ToolTimeout: 50 * time.Millisecond})
			id := e.createAgent(agentBody("", "ulaw_8000"))
			c := e.dial(id, nil)
			meta := c.expect("conversation_initiation_metadata")
			c.send(map[string]any{"type": "contextual_update", "text": tc.text})
			// The tool call follows all of the goodbye's audio.
			if r := c.readResponse(time.Duration(len(textGoodbye)) * voicePerRune); r.text != textGoodbye {
				t.Errorf("goodbye %q", r.text)
			}
			call := c.nextNoPing()
			if call.Type != "client_tool_call" || call.ToolCall.Name != "end_call" || call.ToolCall.ID == "" ||
				call.ToolCall.Parameters["reason"] != "caller pressed #" {
				t.Fatalf("got %s, want client_tool_call end_call", call.raw)
			}
			if tc.result {
				c.send(map[string]any{"type": "client_tool_result", "tool_call_id": call.ToolCall.ID, "result": "bye", "is_error": false})
			}
			if code := closeCode(c.closed()); code != 1000 {
				t.Errorf("close code %d, want 1000", code)
			}
			conv := e.waitEnded(meta.Meta.ConversationID)
			if conv.Digits != "#" || len(conv.ContextualUpdates) != 1 || len(conv.ToolCalls) != 1 ||
				conv.TerminationReason != reasonEndCall {
				t.Errorf("conversation %+v", conv)
			}
			if tc.result && (len(conv.ToolResults) != 1 || conv.ToolResults[0].Result != "bye" || conv.ToolResults[0].ID != call.ToolCall.ID) {
				t.Errorf("tool results %+v", conv.ToolResults)
			}
		})
	}
}

func TestZeroTransfers(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.createAgent(agentBody("", "ulaw_8000", "+15551234567", "+15559876543"))
	c := e.dial(id, nil)
	meta := c.expect("conversation_initiation_metadata")
	press := func(d string) {
		c.send(map[string]any{"type": "contextual_update", "text": "The caller pressed the key " + d + " on the keypad."})
	}
	transfer := func() string {
		press("0")
		call := c.expect("client_tool_call").ToolCall
		if call.Name != "transfer_to_number" || call.Parameters["transfer_number"] != "+15551234567" ||
			call.Parameters["reason"] != "caller pressed 0" {
			t.Fatalf("tool call %+v", call)
		}
		return call.ID
	}
	// A failed transfer: the agent says so and the conversation goes on.
	tid := transfer()
	c.send(map[string]any{"type": "client_tool_result", "tool_call_id": tid, "result": "REFER rejected: 403", "is_error": true})
	if r := c.readResponse(voiceLength(textTransferFailed)); r.text != textTransferFailed {
		t.Errorf("after a failed transfer %q, want %q", r.text, textTransferFailed)
	}
	// The sorry has played (by the caller's audio clock) when the caller presses 5;
	// a response still playing would be interrupted by the answer to the key.
	c.sendPCM(silence(8000, 2*time.Second), 100*time.Millisecond)
	press("5")
	if r := c.readResponse(voiceLength("You pressed 5.")); r.text != "You pressed 5." {
		t.Errorf("digit 5: %q", r.text)
	}
	// A transfer that works: the agent goes quiet. The malformed frame after the
	// digit is the barrier: commands are handled in order, so any answer to the
	// digit would come before the error.
	tid = transfer()
	c.send(map[string]any{"type": "client_tool_result", "tool_call_id": tid, "result": "transferred", "is_error": false})
	press("7")
	if err := c.ws.WriteMessage(1, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if ev := c.nextNoPing(); ev.Type != "error" || ev.Error.ErrorType != "invalid_message" || ev.Error.Code != 1008 {
		t.Errorf("after the transfer: %s, want only the error event", ev.raw)
	}
	if code := closeCode(c.closed()); code != 1008 {
		t.Errorf("close code %d, want 1008", code)
	}
	conv := e.waitEnded(meta.Meta.ConversationID)
	if conv.Transferred != "+15551234567" || conv.Digits != "0507" || len(conv.ToolResults) != 2 || !conv.ToolResults[0].IsError {
		t.Errorf("conversation %+v", conv)
	}
}

func TestZeroWithoutTransferTool(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.createAgent(agentBody("", "ulaw_8000"))
	c := e.dial(id, nil)
	c.expect("conversation_initiation_metadata")
	c.send(map[string]any{"type": "contextual_update", "text": "DTMF 0"})
	if r := c.readResponse(voiceMin); r.text != textNoTransfer {
		t.Errorf("%q, want %q", r.text, textNoTransfer)
	}
}

func TestParseDigit(t *testing.T) {
	cases := []struct {
		text string
		want byte // 0: none
	}{
		{"The caller pressed the key # on the keypad.", '#'},
		{"The caller pressed the key 0 on the keypad.", '0'},
		{"pressed *", '*'},
		{"digit: 7", '7'},
		{"DTMF #", '#'},
		{"dtmf:9", '9'},
		{"User pressed key 3", '3'},
		{"Keypad: 5", '5'},
		{"caller entered 2", '2'},
		{"User is viewing page 2", 0},
		{"The caller sounds upset.", 0},
		{"", 0},
	}
	for _, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			d, ok := parseDigit(tc.text)
			if tc.want == 0 && ok || tc.want != 0 && (!ok || d != tc.want) {
				t.Errorf("parseDigit(%q) = %q, %v; want %q", tc.text, d, ok, tc.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	cases := []struct {
		text string
		frac float64
		want string
	}{
		{"Hello there, how are you today?", 0.5, "Hello there..."}, // "ho" heard of "how"
		{"Hello there, how are you today?", 0.55, "Hello there, how..."},
		{"Hello there, how are you today?", 1, "Hello there, how are you today?"},
		{"Hello there, how are you today?", 0, ""},
		{"Hello there, how are you today?", 0.2, "Hello..."},
	}
	for _, tc := range cases {
		if got := truncate(tc.text, tc.frac); got != tc.want {
			t.Errorf("truncate(%q, %v) = %q, want %q", tc.text, tc.frac, got, tc.want)
		}
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.createAgent(agentBody("Hi.", "ulaw_8000"))
	other := e.createAgent(agentBody("Hi.", "ulaw_8000"))
	signed := func(agent string) string {
		code, b := e.do(http.MethodGet, "/v1/convai/conversation/get-signed-url?agent_id="+agent, nil)
		var out struct {
			URL string `json:"signed_url"`
		}
		if code != 200 || json.Unmarshal(b, &out) != nil {
			t.Fatalf("get-signed-url: %d %s", code, b)
		}
		return out.URL[strings.Index(out.URL, "conversation_signature=")+len("conversation_signature="):]
	}
	sig, otherSig := signed(id), signed(other)
	cases := []struct {
		name, agent, query string
		header             string
		want               int
	}{
		{"xi-api-key", id, "", testKey, 101},
		{"no credentials", id, "", "", 401},
		{"bad key", id, "", "wrong", 401},
		{"unknown agent", "agent_nope", "", testKey, 404},
		{"conversation_signature", id, "&conversation_signature=" + sig, "", 101},
		{"token", id, "&token=" + sig, "", 101},
		{"signature of another agent", id, "&conversation_signature=" + otherSig, "", 401},
		{"made-up signature", id, "&token=abc", "", 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != "" {
				h.Set("xi-api-key", tc.header)
			}
			c, res, err := e.tryDialURL(e.wsURL(tc.agent)+tc.query, h)
			code := 0
			if res != nil {
				code = res.StatusCode
			}
			if code != tc.want {
				t.Fatalf("HTTP %d (%v), want %d", code, err, tc.want)
			}
			if c != nil {
				c.expect("conversation_initiation_metadata")
			}
		})
	}
}

func TestInvalidMessages(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.createAgent(agentBody("", "ulaw_8000"))

	t.Run("unknown types are ignored", func(t *testing.T) {
		c := e.dial(id, nil)
		c.expect("conversation_initiation_metadata")
		c.send(map[string]any{"type": "something_new", "x": 1})
		c.send(map[string]any{"type": "user_activity"})
		c.send(map[string]any{"type": "user_message", "text": "hello"})
		if r := c.readResponse(voiceMin); r.text != "You wrote: hello" {
			t.Errorf("user_message answered %q", r.text)
		}
	})
	t.Run("malformed JSON: error and 1008", func(t *testing.T) {
		c := e.dial(id, nil)
		c.expect("conversation_initiation_metadata")
		if err := c.ws.WriteMessage(1, []byte(`{"type":`)); err != nil {
			t.Fatal(err)
		}
		expectFailure(t, c, 1008, "invalid_message")
	})
	t.Run("malformed first frame: error before metadata", func(t *testing.T) {
		c := e.dial(id, nil)
		if err := c.ws.WriteMessage(1, []byte(`nope`)); err != nil {
			t.Fatal(err)
		}
		c.expect("error")
		if code := closeCode(c.closed()); code != 1008 {
			t.Errorf("close %d, want 1008", code)
		}
	})
	t.Run("override not allowed", func(t *testing.T) {
		body := agentBody("Hi.", "ulaw_8000")
		delete(body, "platform_settings")
		strict := e.createAgent(body)
		c := e.dial(strict, initiation(ptr("Let me speak.")))
		expectFailure(t, c, 1008, "override_error")
	})
	t.Run("unsupported audio format", func(t *testing.T) {
		bad := e.createAgent(agentBody("Hi.", "mp3_44100_128"))
		c := e.dial(bad, nil)
		if ev := c.expect("error"); ev.Error.ErrorType != "value_error" {
			t.Errorf("error %+v", ev.Error)
		}
	})
}

func TestPostCallDocument(t *testing.T) {
	cases := []struct {
		name        string
		delay       time.Duration
		speak       bool
		wantStatus  string
		wantSuccess string
		wantSummary string
	}{
		{"processing until the analysis delay", time.Hour, true, "processing", "", ""},
		{"done: the caller spoke", -1, true, "done", "success", "The caller spoke 1 time; the agent answered each time."},
		{"done: the caller never spoke", -1, false, "done", "failure", "The caller never spoke."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{AnalysisDelay: tc.delay})
			id := e.createAgent(agentBody("Hello, caller.", "ulaw_8000"))
			c := e.dial(id, initiation(nil))
			conv := c.expect("conversation_initiation_metadata").Meta.ConversationID
			c.readResponse(800 * time.Millisecond)
			if tc.speak {
				c.sendPCM(concat(silence(8000, time.Second), tone(8000, 1000, 1500*time.Millisecond), silence(8000, 600*time.Millisecond)), 20*time.Millisecond)
				c.expect("user_transcript")
				c.readResponse(1500 * time.Millisecond)
			}
			code, b := e.do(http.MethodGet, "/v1/convai/conversations/"+conv, nil)
			if code != 200 || !strings.Contains(string(b), `"status":"in-progress"`) {
				t.Errorf("during the call: %d %s", code, b)
			}
			c.ws.Close()
			e.waitEnded(conv)
			code, b = e.do(http.MethodGet, "/v1/convai/conversations/"+conv, nil)
			var doc struct {
				Status     string `json:"status"`
				AgentID    string `json:"agent_id"`
				Transcript []struct {
					Role    string `json:"role"`
					Message string `json:"message"`
					Time    *int   `json:"time_in_call_secs"`
				} `json:"transcript"`
				Metadata struct {
					Duration *int   `json:"call_duration_secs"`
					Reason   string `json:"termination_reason"`
					Charging struct {
						LLM struct {
							Gen struct {
								Usage map[string]struct {
									Input  struct{ Tokens int } `json:"input"`
									Output struct{ Tokens int } `json:"output_total"`
								} `json:"model_usage"`
							} `json:"irreversible_generation"`
						} `json:"llm_usage"`
					} `json:"charging"`
				} `json:"metadata"`
				Analysis *struct {
					Success string `json:"call_successful"`
					Summary string `json:"transcript_summary"`
				} `json:"analysis"`
				Init map[string]any `json:"conversation_initiation_client_data"`
			}
			if code != 200 || json.Unmarshal(b, &doc) != nil {
				t.Fatalf("GET conversation: %d %s", code, b)
			}
			if doc.Status != tc.wantStatus || doc.AgentID != id || doc.Metadata.Duration == nil ||
				!strings.HasPrefix(doc.Metadata.Reason, "Client disconnected") || doc.Init == nil {
				t.Errorf("document %s", b)
			}
			want := []string{"agent:Hello, caller."}
			if tc.speak {
				want = append(want, "user:(caller spoke 1.5 s)", "agent:I heard you for 1.5 seconds.")
			}
			var got []string
			for _, turn := range doc.Transcript {
				got = append(got, turn.Role+":"+turn.Message)
				if turn.Time == nil {
					t.Errorf("turn without time_in_call_secs: %s", b)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("transcript %q, want %q", got, want)
			}
			u := doc.Metadata.Charging.LLM.Gen.Usage["sim-llm"]
			if u.Input.Tokens+u.Output.Tokens == 0 {
				t.Errorf("no token counts: %s", b)
			}
			if tc.wantStatus != "done" {
				if doc.Analysis != nil {
					t.Errorf("analysis before done: %s", b)
				}
				return
			}
			if doc.Analysis == nil || doc.Analysis.Success != tc.wantSuccess || doc.Analysis.Summary != tc.wantSummary {
				t.Errorf("analysis %s", b)
			}
		})
	}
}

func TestEndings(t *testing.T) {
	t.Run("max_duration_seconds", func(t *testing.T) {
		e := newEnv(t, Options{})
		body := agentBody("", "ulaw_8000")
		body["conversation_config"].(map[string]any)["conversation"].(map[string]any)["max_duration_seconds"] = 0.3
		c := e.dial(e.createAgent(body), initiation(nil))
		c.expect("conversation_initiation_metadata")
		expectFailure(t, c, 1000, "max_duration_exceeded")
	})
	t.Run("no client frames", func(t *testing.T) {
		e := newEnv(t, Options{ReceiveTimeout: 300 * time.Millisecond})
		c := e.dial(e.createAgent(agentBody("", "ulaw_8000")), initiation(nil))
		c.expect("conversation_initiation_metadata")
		expectFailure(t, c, 1002, "transport_receive_timeout")
	})
	t.Run("# without client_tool_call in client_events", func(t *testing.T) {
		e := newEnv(t, Options{})
		body := agentBody("", "ulaw_8000")
		delete(body["conversation_config"].(map[string]any), "conversation") // the real default: no tool calls
		c := e.dial(e.createAgent(body), initiation(nil))
		c.expect("conversation_initiation_metadata")
		c.send(map[string]any{"type": "contextual_update", "text": "pressed #"})
		c.readResponse(voiceLength(textGoodbye))
		for ev := range c.events {
			t.Errorf("after the goodbye: %s, want the close", ev.raw)
		}
		if code := closeCode(c.err); code != 1000 {
			t.Errorf("close %d, want 1000", code)
		}
	})
}
