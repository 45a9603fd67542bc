package elevenlabssim

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
			if !strings.HasPrefix(meta.Meta.ConversationID, "conv_") || meta.Meta.In != f.Name || meta.Meta.Out != f.Name {
				t.Errorf("metadata %+v, want conv_... and %s both ways", *meta.Meta, f.Name)
			}
			r := c.readResponse(tc.wantDur)
			if r.text != tc.wantText {
				t.Errorf("agent_response %q, want %q", r.text, tc.wantText)
			}
			if got := f.SampleTime(int64(len(r.pcm))); got != tc.wantDur {
				t.Errorf("audio lasts %v, want %v", got, tc.wantDur)
			}
			checkTone(t, "opening line", r.pcm, f.Rate, 440, -12)
			for i, d := range r.chunks {
				if d < 100*time.Millisecond && i < len(r.chunks)-1 || d > 500*time.Millisecond {
					t.Errorf("chunk %d lasts %v, want 100-500 ms", i, d)
				}
				if r.eventIDs[i] != r.eventIDs[0] {
					t.Errorf("audio event_ids %v: one response, one id", r.eventIDs)
				}
			}
			if len(r.chunks) > 2 && r.chunks[0] == r.chunks[1] {
				t.Errorf("chunks all alike: %v", r.chunks)
			}
			if tc.init != nil {
				conv, _ := e.sim.ConversationByID(meta.Meta.ConversationID)
				in := conv.Initiation
				if in == nil || in.DynamicVariables["caller_number"] != "+15550001111" || deref(in.FirstMessage) != "You called from {{caller_number}}." {
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
			rate := c.f.Rate
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
			if got := c.out.SampleTime(int64(len(r.pcm))); got != time.Second {
				t.Errorf("echo lasts %v, want 1s", got)
			}
			checkTone(t, "echo", r.pcm[c.out.Samples(50*time.Millisecond):c.out.Samples(950*time.Millisecond)], c.out.Rate, 1000, -17)
			if ut.UserTranscript.EventID != r.eventIDs[0] {
				t.Errorf("user_transcript event_id %d, the reply's audio %d: one turn, one id", ut.UserTranscript.EventID, r.eventIDs[0])
			}
		})
	}
}

// TestBargeIn, in both interruption id modes: the interruption stops the reply,
// the correction says what was heard, and the reply to the interrupting
// utterance carries the id the mode says (ReuseID: the interruption's own).
func TestBargeIn(t *testing.T) {
	for _, mode := range []InterruptionIDs{ReuseID, InterruptedID} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t, Options{InterruptionIDs: mode})
			first := "Welcome to the test line. This is a very long opening message, so that you can interrupt it."
			id := e.createAgent(agentBody(first, "ulaw_8000"))
			c := e.dial(id, nil)
			c.expect("conversation_initiation_metadata")
			var heard time.Duration
			ev := c.expect("audio")
			openingID := ev.Audio.EventID
			heard = c.out.Duration(len(ev.Audio.B64) * 3 / 4)
			// The caller talks over the agent at once: 400 ms of tone.
			c.sendPCM(tone(8000, 1000, 400*time.Millisecond), 20*time.Millisecond)
			var intr event
			for intr.Type == "" {
				switch ev := c.nextNoPing(); ev.Type {
				case "audio":
					if ev.Audio.EventID != openingID {
						t.Fatalf("opening audio with event_id %d, then %d", openingID, ev.Audio.EventID)
					}
					heard += c.out.Duration(len(ev.Audio.B64) * 3 / 4)
				case "agent_response":
				case "interruption":
					intr = ev
				default:
					t.Fatalf("unexpected %s", ev.raw)
				}
			}
			switch {
			case mode == InterruptedID && intr.Interruption.EventID != openingID:
				t.Errorf("interruption event_id %d, want the interrupted reply's %d", intr.Interruption.EventID, openingID)
			case mode == ReuseID && intr.Interruption.EventID <= openingID:
				t.Errorf("interruption event_id %d, want a new one after %d", intr.Interruption.EventID, openingID)
			}
			if heard >= 4*time.Second {
				t.Errorf("the whole opening line (%v) was sent before the interruption", heard)
			}
			corr := c.expect("agent_response_correction").Correction
			if corr.Original != first || len(corr.Corrected) >= len(first) || corr.EventID != openingID ||
				!strings.HasPrefix(first, strings.TrimSuffix(corr.Corrected, "...")) {
				t.Errorf("correction %+v", corr)
			}
			// The caller stops: the utterance is answered.
			c.sendPCM(silence(8000, 600*time.Millisecond), 20*time.Millisecond)
			ut := c.expect("user_transcript") // no audio of the old response in between
			if ut.UserTranscript.Text != "(caller spoke 0.4 s)" {
				t.Errorf("user_transcript %q", ut.UserTranscript.Text)
			}
			r := c.readResponse(400 * time.Millisecond)
			want := intr.Interruption.EventID
			if mode == InterruptedID {
				want = openingID + 1
			}
			if r.eventIDs[0] != want || ut.UserTranscript.EventID != want {
				t.Errorf("reply event_id %d, user_transcript %d, want %d (interruption %d)", r.eventIDs[0], ut.UserTranscript.EventID, want, intr.Interruption.EventID)
			}
			c.ws.Close()
			conv := e.waitEnded(e.sim.Conversations()[0].ID)
			if conv.Interruptions != 1 || len(conv.Transcript) != 3 || !conv.Transcript[0].Interrupted ||
				conv.Transcript[0].Message != corr.Corrected || deref(conv.Transcript[0].OriginalMessage) != first {
				t.Errorf("transcript %+v, interruptions %d", conv.Transcript, conv.Interruptions)
			}
		})
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

// TestEndCall: with the hook, a user turn of "#" runs the end_call system tool:
// the farewell, agent_tool_response (tool_type system; never a client_tool_call)
// and close 1000, in both orders; without the hook, or without end_call in
// built_in_tools, "#" is an ordinary turn.
func TestEndCall(t *testing.T) {
	for _, order := range []EndCallOrder{ToolResponseFirst, FarewellFirst} {
		t.Run(string(order), func(t *testing.T) {
			e := newEnv(t, Options{EndCallOrder: order, Hooks: []string{HookHashEndsCall}})
			c := e.dial(e.createAgent(agentBody("", "ulaw_8000")), nil)
			c.expect("conversation_initiation_metadata")
			c.send(map[string]any{"type": "user_message", "text": "The caller entered # on the keypad."})
			var seq []string
			var audio time.Duration
			var respID, toolID int64
			for ev := range c.events {
				switch ev.Type {
				case "audio":
					if len(seq) == 0 || seq[len(seq)-1] != "audio" {
						seq = append(seq, "audio")
					}
					audio += c.out.Duration(len(ev.Audio.B64) * 3 / 4)
					respID = ev.Audio.EventID
				case "agent_response":
					if ev.AgentResponse.Text != textFarewell {
						t.Errorf("farewell %q", ev.AgentResponse.Text)
					}
				case "agent_tool_response":
					seq = append(seq, "tool_response")
					if tr := ev.ToolResponse; tr.Name != "end_call" || tr.Type != "system" || tr.IsError {
						t.Errorf("agent_tool_response %+v", tr)
					}
					toolID = ev.ToolResponse.EventID
				case "ping":
				default:
					t.Errorf("unexpected %s", ev.raw)
				}
			}
			want := []string{"tool_response", "audio"}
			if order == FarewellFirst {
				want = []string{"audio", "tool_response"}
			}
			if fmt.Sprint(seq) != fmt.Sprint(want) || (audio-voiceLength(textFarewell)).Abs() > 5*time.Millisecond || respID != toolID {
				t.Errorf("sequence %v (audio %v, ids %d/%d), want %v with all %v of the farewell", seq, audio, respID, toolID, want, voiceLength(textFarewell))
			}
			if code := closeCode(c.err); code != 1000 {
				t.Errorf("close %v, want 1000", c.err)
			}
			conv := e.waitEnded(e.sim.Conversations()[0].ID)
			if conv.TerminationReason != reasonEndCall || len(conv.ToolCalls) != 0 || fmt.Sprint(conv.SystemTools) != "[end_call]" {
				t.Errorf("conversation %+v", conv)
			}
		})
	}
	t.Run("without the hook # is a turn", func(t *testing.T) {
		e := newEnv(t, Options{})
		c := e.dial(e.createAgent(agentBody("", "ulaw_8000")), nil)
		c.expect("conversation_initiation_metadata")
		c.send(map[string]any{"type": "user_message", "text": "The caller entered # on the keypad."})
		if r := c.readResponse(voiceMin); r.text != "You wrote: The caller entered # on the keypad." {
			t.Errorf("answer %q", r.text)
		}
	})
	t.Run("an agent without end_call cannot end the call", func(t *testing.T) {
		e := newEnv(t, Options{Hooks: []string{HookHashEndsCall}})
		body := agentBody("", "ulaw_8000")
		body["conversation_config"].(map[string]any)["agent"].(map[string]any)["prompt"].(map[string]any)["built_in_tools"] = map[string]any{}
		c := e.dial(e.createAgent(body), nil)
		c.expect("conversation_initiation_metadata")
		c.send(map[string]any{"type": "user_message", "text": "#"})
		c.send(map[string]any{"type": "user_message", "text": "still there?"})
		if r := c.readResponse(voiceMin); r.text != "You wrote: still there?" {
			t.Errorf("answer %q", r.text)
		}
	})
}

// TestClientTool: with the hook, a user turn starting with 0 calls the agent's
// client tool (from tool_ids) with its enum parameter picked by the next digit;
// the agent waits for client_tool_result (response_timeout_secs) and answers it.
func TestClientTool(t *testing.T) {
	e := newEnv(t, Options{Hooks: []string{HookZeroCallsTool}})
	tool := e.createTool(transferTool(1, "+15551230001", "sip:desk@pbx.example.com"))
	id := e.createAgent(agentBody("", "ulaw_8000", tool))
	c := e.dial(id, nil)
	c.expect("conversation_initiation_metadata")
	c.send(map[string]any{"type": "user_message", "text": "The caller entered 02# on the keypad."})
	call := c.expect("client_tool_call").ToolCall
	if call.Name != "transfer_call" || call.Parameters["destination"] != "sip:desk@pbx.example.com" || call.Parameters["reason"] == "" {
		t.Fatalf("tool call %+v", call)
	}
	c.send(map[string]any{"type": "client_tool_result", "tool_call_id": call.ID, "result": "The transfer failed.", "is_error": true})
	if r := c.readResponse(voiceLength(textToolFailed)); r.text != textToolFailed {
		t.Errorf("after an error result: %q", r.text)
	}
	played := func() { c.sendPCM(silence(8000, 2*time.Second), 100*time.Millisecond) } // the caller's clock: the reply has played
	played()
	c.send(map[string]any{"type": "user_message", "text": "0"})
	call = c.expect("client_tool_call").ToolCall
	if call.Parameters["destination"] != "+15551230001" {
		t.Fatalf("tool call %+v", call)
	}
	c.send(map[string]any{"type": "client_tool_result", "tool_call_id": call.ID, "result": "ok", "is_error": false})
	if r := c.readResponse(voiceLength(textToolDone)); r.text != textToolDone {
		t.Errorf("after a good result: %q", r.text)
	}
	played()
	// No result within response_timeout_secs (1 s here): the agent carries on.
	c.send(map[string]any{"type": "user_message", "text": "0"})
	c.expect("client_tool_call")
	if r := c.readResponse(voiceMin); r.text != textToolTimeout {
		t.Errorf("after the timeout: %q", r.text)
	}
	conv, _ := e.sim.ConversationByID(e.sim.Conversations()[0].ID)
	if len(conv.ToolCalls) != 3 || len(conv.ToolResults) != 2 || !conv.ToolResults[0].IsError {
		t.Errorf("conversation %+v", conv)
	}
	t.Run("a system transfer_to_number never reaches the client", func(t *testing.T) {
		body := agentBody("", "ulaw_8000")
		body["conversation_config"].(map[string]any)["agent"].(map[string]any)["prompt"].(map[string]any)["built_in_tools"].(map[string]any)["transfer_to_number"] =
			map[string]any{"type": "system", "name": "transfer_to_number", "description": "", "params": map[string]any{"system_tool_type": "transfer_to_number",
				"transfers": []any{map[string]any{"transfer_destination": map[string]any{"type": "phone", "phone_number": "+15551230001"}, "condition": "asked"}}}}
		c := e.dial(e.createAgent(body), nil)
		c.expect("conversation_initiation_metadata")
		c.send(map[string]any{"type": "user_message", "text": "0"})
		if r := c.readResponse(voiceMin); r.text != "You wrote: 0" {
			t.Errorf("answer %q", r.text)
		}
	})
}

// TestKeypadText: the hooks read keypad characters whatever the wording.
func TestKeypadText(t *testing.T) {
	for text, want := range map[string]string{
		"The caller entered 1234# on the keypad.": "1234#",
		"pressed *":                "*",
		"The caller sounds upset.": "",
		"DTMF 0, then 2":           "02",
	} {
		if got := keypad(text); got != want {
			t.Errorf("keypad(%q) = %q, want %q", text, got, want)
		}
	}
}

// TestContextualUpdate: background context is recorded and never answered; a
// user_message is a turn and is.
func TestContextualUpdate(t *testing.T) {
	e := newEnv(t, Options{Hooks: Hooks})
	c := e.dial(e.createAgent(agentBody("", "ulaw_8000")), nil)
	c.expect("conversation_initiation_metadata")
	c.send(map[string]any{"type": "contextual_update", "text": "The caller entered # on the keypad."})
	c.send(map[string]any{"type": "contextual_update", "text": "The caller pressed 0."})
	c.send(map[string]any{"type": "user_message", "text": "hello"})
	if r := c.readResponse(voiceMin); r.text != "You wrote: hello" {
		t.Errorf("the first answer is %q", r.text)
	}
	conv, _ := e.sim.ConversationByID(e.sim.Conversations()[0].ID)
	if len(conv.ContextualUpdates) != 2 || len(conv.ToolCalls) != 0 || len(conv.SystemTools) != 0 || fmt.Sprint(conv.UserMessages) != "[hello]" {
		t.Errorf("conversation %+v", conv)
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

// TestAuth: a public agent needs no credential; a private one a live signed URL
// for it; an xi-api-key on the socket counts for nothing; the REST API needs a
// key, and an agent is 404 to another account's key.
func TestAuth(t *testing.T) {
	e := newEnv(t, Options{})
	public := e.createAgent(agentBody("Hi.", "ulaw_8000"))
	body := agentBody("Hi.", "ulaw_8000")
	body["platform_settings"].(map[string]any)["auth"] = map[string]any{"enable_auth": true}
	private := e.createAgent(body)
	other := e.createAgent(body)
	code, signed := e.signedURL(testKey2, private) // another key of the same account
	if code != 200 || !strings.HasPrefix(signed, "ws://127.0.0.1:") || !strings.Contains(signed, "agent_id="+private) {
		t.Fatalf("get-signed-url: %d %s", code, signed)
	}
	sig := signed[strings.Index(signed, "conversation_signature="):]
	_, otherSigned := e.signedURL(testKey, other)
	otherSig := otherSigned[strings.Index(otherSigned, "conversation_signature="):]
	cases := []struct {
		name, url, header string
		want              int
	}{
		{"public agent, no credentials", e.wsURL(public), "", 101},
		{"public agent, a bad key is ignored", e.wsURL(public), "wrong", 101},
		{"private agent, signed URL", signed, "", 101},
		{"private agent, signed URL used again", signed, "", 101},
		{"private agent, no credentials", e.wsURL(private), "", 403},
		{"private agent, a good key is not a signature", e.wsURL(private), testKey, 403},
		{"private agent, another agent's signature", e.wsURL(private) + "&" + otherSig, "", 403},
		{"private agent, made-up signature", e.wsURL(private) + "&conversation_signature=abc", "", 403},
		{"unknown agent", e.wsURL("agent_nope") + "&" + sig, "", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != "" {
				h.Set("xi-api-key", tc.header)
			}
			c, res, err := e.tryDialURL(tc.url, h)
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
	t.Run("an expired signed URL", func(t *testing.T) {
		e.sim.ExpireSignatures()
		if _, res, _ := e.tryDialURL(signed, nil); res == nil || res.StatusCode != 403 {
			t.Errorf("expired signature: %v", res)
		}
		_, fresh := e.signedURL(testKey, private)
		if c, _, err := e.tryDialURL(fresh, nil); err != nil {
			t.Errorf("fresh signature: %v", err)
		} else {
			c.expect("conversation_initiation_metadata")
		}
	})
	t.Run("REST", func(t *testing.T) {
		for _, tc := range []struct {
			key, method, path string
			want              int
		}{
			{"", http.MethodGet, "/v1/convai/agents/" + public, 401},
			{"wrong", http.MethodGet, "/v1/convai/agents/" + public, 401},
			{testKey2, http.MethodGet, "/v1/convai/agents/" + public, 200},
			{otherKey, http.MethodGet, "/v1/convai/agents/" + public, 404},
			{otherKey, http.MethodGet, "/v1/convai/conversation/get-signed-url?agent_id=" + private, 404},
			{otherKey, http.MethodPatch, "/v1/convai/agents/" + public, 404},
			{otherKey, http.MethodDelete, "/v1/convai/agents/" + public, 404},
			{otherKey, http.MethodGet, "/v1/convai/conversations/" + e.sim.Conversations()[0].ID, 404},
		} {
			var body any
			if tc.method == http.MethodPatch {
				body = map[string]any{"name": "x"}
			}
			if code, b := e.doKey(tc.key, tc.method, tc.path, body); code != tc.want {
				t.Errorf("%s %s with %q: %d %s, want %d", tc.method, tc.path, tc.key, code, b, tc.want)
			}
		}
	})
}

// TestSignedURLHost: the signed URL names the host to dial (a regional one).
func TestSignedURLHost(t *testing.T) {
	e := newEnv(t, Options{SignedURLBase: "wss://api.eu.residency.elevenlabs.io"})
	id := e.createAgent(agentBody("Hi.", "ulaw_8000"))
	if _, u := e.signedURL(testKey, id); !strings.HasPrefix(u, "wss://api.eu.residency.elevenlabs.io/v1/convai/conversation?agent_id="+id+"&conversation_signature=") {
		t.Errorf("signed URL %s", u)
	}
}

func TestInvalidMessages(t *testing.T) {
	e := newEnv(t, Options{Observe: contractCheck(t, false)})
	id := e.createAgent(agentBody("", "ulaw_8000"))

	t.Run("the contract's other messages are accepted", func(t *testing.T) {
		c := e.dial(id, nil)
		c.expect("conversation_initiation_metadata")
		c.send(map[string]any{"type": "user_activity"})
		c.send(map[string]any{"type": "feedback", "event_id": 1, "score": "like"})
		c.send(map[string]any{"type": "user_message", "text": "hello"})
		if r := c.readResponse(voiceMin); r.text != "You wrote: hello" {
			t.Errorf("user_message answered %q", r.text)
		}
	})
	for _, tc := range []struct {
		name    string
		msg     string
		errType string
	}{
		{"an unknown type", `{"type":"something_new","x":1}`, "invalid_message"},
		{"DTMF as its own type", `{"type":"dtmf","digit":"5"}`, "invalid_message"},
		{"no type", `{"text":"hi"}`, "invalid_message"},
		{"contextual_update without text", `{"type":"contextual_update"}`, "missing_fields"},
		{"pong without event_id", `{"type":"pong"}`, "missing_fields"},
		{"client_tool_result without is_error", `{"type":"client_tool_result","tool_call_id":"x","result":"ok"}`, "missing_fields"},
		{"client_tool_result with an object result", `{"type":"client_tool_result","tool_call_id":"x","result":{"ok":true},"is_error":false}`, "value_error"},
	} {
		t.Run(tc.name+": error and 1008", func(t *testing.T) {
			c := e.dial(id, nil)
			c.expect("conversation_initiation_metadata")
			if err := c.ws.WriteMessage(1, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			expectFailure(t, c, 1008, tc.errType)
		})
	}
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
		body["conversation_config"].(map[string]any)["conversation"].(map[string]any)["max_duration_seconds"] = 1
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
	t.Run("end_call with the default client_events: no tool response, just the close", func(t *testing.T) {
		e := newEnv(t, Options{Hooks: []string{HookHashEndsCall}})
		body := agentBody("", "ulaw_8000")
		delete(body["conversation_config"].(map[string]any), "conversation") // the default: no tool calls or responses
		c := e.dial(e.createAgent(body), initiation(nil))
		c.expect("conversation_initiation_metadata")
		c.send(map[string]any{"type": "user_message", "text": "#"})
		c.readResponse(voiceLength(textFarewell))
		for ev := range c.events {
			t.Errorf("after the farewell: %s, want the close", ev.raw)
		}
		if code := closeCode(c.err); code != 1000 {
			t.Errorf("close %d, want 1000", code)
		}
	})
}
