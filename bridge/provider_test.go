package bridge_test

import (
	"context"
	"encoding/base64"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge/elevenlabs"
	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/store"
)

// digits presses each key on the phone (RFC 4733): 0-9, * is 10, # is 11.
func (r *rig) digits(keys string) {
	var evs []byte
	for _, k := range keys {
		switch {
		case k >= '0' && k <= '9':
			evs = append(evs, byte(k-'0'))
		case k == '*':
			evs = append(evs, 10)
		case k == '#':
			evs = append(evs, 11)
		}
	}
	r.phone.keys(evs...)
}

// TestKeypad: digits are collected until # or a pause and reach the agent as one
// message: a user_message by default (answered, and in the transcript), a
// contextual_update (never answered), or nothing, as config.keypad.mode says.
func TestKeypad(t *testing.T) {
	t.Run("user_message", func(t *testing.T) {
		r := newRig(t, rigOpts{config: map[string]any{"keypad": map[string]any{"inter_digit_timeout_ms": 400}}})
		r.connect("PCMU")
		<-r.call.Drained()
		r.digits("1234#")
		r.digits("56") // no #: it goes after the pause
		waitFor(t, "both entries at the provider", 10*time.Second, func() bool {
			return len(r.sim.Conversations()[0].UserMessages) == 2
		})
		c := r.sim.Conversations()[0]
		if !slices.Equal(c.UserMessages, []string{"The caller entered 1234# on the keypad.", "The caller entered 56 on the keypad."}) || len(c.ContextualUpdates) != 0 {
			t.Fatalf("the provider got %q, context %q", c.UserMessages, c.ContextualUpdates)
		}
		waitFor(t, "the agent's answer in the transcript", 10*time.Second, func() bool {
			return slices.ContainsFunc(r.transcript(), func(e store.TranscriptEntry) bool {
				return e.Role == "agent" && e.Message == "You wrote: The caller entered 56 on the keypad."
			})
		})
		if tr := r.transcript(); !slices.ContainsFunc(tr, func(e store.TranscriptEntry) bool {
			return e.Role == "user" && e.Message == "The caller entered 1234# on the keypad."
		}) {
			t.Fatalf("transcript %+v", tr)
		}
	})
	t.Run("contextual_update", func(t *testing.T) {
		r := newRig(t, rigOpts{config: map[string]any{"keypad": map[string]any{"mode": "contextual_update"}}})
		r.connect("PCMU")
		<-r.call.Drained()
		r.digits("42#")
		waitFor(t, "the context at the provider", 10*time.Second, func() bool { return len(r.sim.Conversations()[0].ContextualUpdates) == 1 })
		c := r.sim.Conversations()[0]
		if c.ContextualUpdates[0] != "The caller entered 42# on the keypad." || len(c.UserMessages) != 0 {
			t.Fatalf("conversation %+v", c)
		}
	})
	t.Run("off", func(t *testing.T) {
		r := newRig(t, rigOpts{config: map[string]any{"keypad": map[string]any{"mode": "off"}}})
		r.connect("PCMU")
		<-r.call.Drained()
		r.digits("9#")
		// An utterance after the digits: once it is answered, the digits would have arrived.
		r.phone.send(tone(1000, -10, 500*time.Millisecond))
		r.phone.send(make([]int16, 8000*7/10))
		waitFor(t, "the answer to the utterance", 10*time.Second, func() bool { return r.sim.Conversations()[0].Utterances == 1 })
		if c := r.sim.Conversations()[0]; len(c.UserMessages)+len(c.ContextualUpdates) != 0 {
			t.Fatalf("keypad off, yet the provider got %+v", c)
		}
	})
}

// TestTransferTool: the agent calls the gateway's client transfer tool with the
// destination it picked (the simulator's hook stands in for the LLM); the call is
// transferred there; a failed transfer is reported to the agent as an error, and
// a destination the agent does not have is refused.
func TestTransferTool(t *testing.T) {
	cfg := map[string]any{"keypad": map[string]any{"inter_digit_timeout_ms": 300}, "transfer": map[string]any{"destinations": []any{
		map[string]any{"number": "+27219990001", "condition": "sales"},
		map[string]any{"number": "sip:support@pbx.example.com", "condition": "support"},
	}}}
	r := newRig(t, rigOpts{config: cfg, sim: elevenlabssim.Options{Hooks: []string{elevenlabssim.HookZeroCallsTool}}})
	r.connect("PCMU")
	<-r.call.Drained()
	r.digits("02#") // the second destination; the rig's call refuses the transfer
	select {
	case got := <-r.call.transfers:
		if got != "sip:support@pbx.example.com" {
			t.Fatalf("transfer to %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no transfer")
	}
	waitFor(t, "the tool result at the provider", 10*time.Second, func() bool { return len(r.sim.Conversations()[0].ToolResults) == 1 })
	c := r.sim.Conversations()[0]
	if c.ToolCalls[0].Name != elevenlabs.TransferTool || !c.ToolResults[0].IsError || !strings.Contains(c.ToolResults[0].Result, "transfer failed") {
		t.Fatalf("tool call %+v, result %+v", c.ToolCalls, c.ToolResults)
	}
	// Now the transfer works: the agent leaves the call.
	r.call.transferErr = nil
	<-r.call.Drained()
	r.digits("0")
	select {
	case got := <-r.call.transfers:
		if got != "+27219990001" {
			t.Fatalf("transfer to %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no second transfer")
	}
	select {
	case <-r.sess.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after the transfer")
	}
	if e := r.sess.End(); e.Reason != "transferred" {
		t.Fatalf("end %+v", e)
	}
}

// TestTransferRecordedWhenTheCallEndsFirst: a REFER that succeeds ends the call at
// once (the trunk's BYE, our supervisor closing the session) while the transfer
// tool is still returning; the transfer's outcome is in the transcript all the
// same, written before the session's close finishes (the call's record is made
// final after that). Before, the entry came after the recorder's last flush and
// was lost (TestTransfers "REFER accepted" under load).
func TestTransferRecordedWhenTheCallEndsFirst(t *testing.T) {
	cfg := map[string]any{"transfer": map[string]any{"destinations": []any{
		map[string]any{"number": "+27219990001", "condition": "sales"},
	}}}
	r := newRig(t, rigOpts{config: cfg, sim: elevenlabssim.Options{Hooks: []string{elevenlabssim.HookZeroCallsTool}}})
	r.connect("PCMU")
	r.call.transferErr = nil
	closed := make(chan struct{})
	r.call.inTransfer = func(ctx context.Context) {
		// The call ends while the transfer is being confirmed: wait until the
		// session has ended or has cancelled the transfer, then report success.
		go func() { r.end("transferred"); close(closed) }()
		select {
		case <-r.sess.Done():
		case <-ctx.Done():
		}
	}
	<-r.call.Drained()
	r.digits("0#")
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not close")
	}
	tr, err := r.st.Transcript(context.Background(), r.co.ID, r.conv.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tr {
		if e.Role == "system" && strings.Contains(e.Message, "transferred to +27219990001") {
			return
		}
	}
	t.Fatalf("no transfer entry in %+v", tr)
}

// TestCredentialRotation: a company replaces its key within the same provider
// account and revokes the old one there; its agent, created with the old key,
// still takes calls: the gateway tries the company's current key and moves the
// agent to it.
func TestCredentialRotation(t *testing.T) {
	r := newRig(t, rigOpts{sim: elevenlabssim.Options{Accounts: map[string][]string{"platform": {"k"}, "acme": {"sk_acme_old", "sk_acme_new"}}},
		beforePublish: func(r *rig) {
			if _, err := r.st.CreateCredential(context.Background(), r.co.ID, "elevenlabs", map[string]any{"api_key": "sk_acme_old"}); err != nil {
				t.Fatal(err)
			}
		}})
	if r.agent.Provider == nil || r.agent.Provider.Credential != store.CredentialCompany+elevenlabs.Fingerprint("sk_acme_old") {
		t.Fatalf("binding %+v", r.agent.Provider)
	}
	ctx := context.Background()
	if err := r.st.DeleteCredential(ctx, r.co.ID, "elevenlabs"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.CreateCredential(ctx, r.co.ID, "elevenlabs", map[string]any{"api_key": "sk_acme_new"}); err != nil {
		t.Fatal(err)
	}
	r.sim.RevokeKey("sk_acme_old")
	r.connect("PCMU")
	start := time.Now()
	waitFor(t, "the opening line", 10*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 4000 })
	a, err := r.st.GetAgent(ctx, r.co.ID, r.agent.ID)
	if err != nil || a.Provider.Credential != store.CredentialCompany+elevenlabs.Fingerprint("sk_acme_new") {
		t.Fatalf("binding after the call: %+v %v", a.Provider, err)
	}
}

// TestTokenBuckets: the post-call analysis keeps the provider's token buckets
// apart, and counts the generated tokens (irreversible_generation) once.
func TestTokenBuckets(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.connect("PCMU")
	<-r.call.Drained()
	r.phone.send(tone(1000, -10, 800*time.Millisecond))
	r.phone.send(make([]int16, 8000*7/10))
	waitFor(t, "the answer", 10*time.Second, func() bool { return len(r.transcript()) >= 3 })
	r.end("test_end")
	var c *store.Conversation
	waitFor(t, "the post-call analysis", 10*time.Second, func() bool {
		c, _ = r.st.GetConversation(context.Background(), r.co.ID, r.conv.ID)
		return c.TranscriptSummary != nil
	})
	usage, _ := c.Metadata["llm_usage"].(map[string]any)
	irr, _ := usage["irreversible_generation"].(map[string]any)
	ini, _ := usage["initiated_generation"].(map[string]any)
	tokens, _ := c.Metadata["llm_tokens"].(float64)
	sum := 0.0
	for _, v := range irr {
		sum += v.(float64)
	}
	if len(irr) == 0 || len(ini) == 0 || tokens == 0 || tokens != sum {
		t.Fatalf("metadata %v", c.Metadata)
	}
}

// TestBargeInReplyHeard: in both of the provider's interruption id modes, the
// reply to the caller who talked over the agent is heard on the RTP the caller
// receives, and what played before the barge-in is not heard after it.
func TestBargeInReplyHeard(t *testing.T) {
	for _, mode := range []elevenlabssim.InterruptionIDs{elevenlabssim.ReuseID, elevenlabssim.InterruptedID} {
		t.Run(string(mode), func(t *testing.T) {
			long := strings.Repeat("This is a long opening line that goes on and on. ", 3)
			r := newRig(t, rigOpts{opening: long, sim: elevenlabssim.Options{InterruptionIDs: mode}})
			r.connect("PCMU")
			start := time.Now()
			waitFor(t, "the opening line to play", 10*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 4000 })
			r.phone.send(tone(1000, -10, 800*time.Millisecond))
			spoke := time.Now()
			r.phone.send(make([]int16, 8000*7/10))
			// The reply is the echo of what the provider heard (on a loaded machine the
			// jitter buffer may cut the utterance short): wait for it to be sent and played.
			waitFor(t, "the provider's reply", 10*time.Second, func() bool {
				tr := r.sim.Conversations()[0].Transcript
				return len(tr) >= 3 && strings.HasPrefix(tr[len(tr)-1].Message, "I heard you for")
			})
			waitFor(t, "the reply after the barge-in", 10*time.Second, func() bool { return len(loud(r.phone.audioSince(spoke))) >= 800 })
			<-r.call.Drained()
			reply := loud(r.phone.audioSince(spoke))
			if f := audiotest.DominantFrequency(reply, 8000); math.Abs(f-1000) > 5 {
				t.Fatalf("after the barge-in the caller hears %.0f Hz, want the 1000 Hz reply (not the 440 Hz opening)", f)
			}
			if n := r.sim.Conversations()[0].Interruptions; n != 1 {
				t.Fatalf("%d interruptions", n)
			}
		})
	}
}

// TestSignedURLHost: each call asks for a signed URL and opens the websocket on
// the host that URL names (a regional host), not on the REST host.
func TestSignedURLHost(t *testing.T) {
	var upgrades atomic.Int64
	var regional *httptest.Server
	r := newRig(t, rigOpts{beforePublish: func(r *rig) {
		regional = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			upgrades.Add(1)
			r.sim.ServeHTTP(w, req)
		}))
		t.Cleanup(regional.Close)
	}})
	r.sim.SetSignedURLBase("ws" + strings.TrimPrefix(regional.URL, "http"))
	r.connect("PCMU")
	waitFor(t, "the conversation", 10*time.Second, func() bool { return len(r.sim.Conversations()) == 1 })
	if upgrades.Load() != 1 || !r.sim.Conversations()[0].Signed {
		t.Fatalf("%d upgrades on the signed URL's host; conversation %+v", upgrades.Load(), r.sim.Conversations()[0])
	}
}

// TestEndCallWithoutClose: a provider that sends agent_tool_response(end_call)
// and its farewell but never closes: the call still ends, after the farewell has
// played and the grace period has passed.
func TestEndCallWithoutClose(t *testing.T) {
	farewell := audiotest.Sine(8000, 440, -12, 800*time.Millisecond)
	ulaw := make([]byte, len(farewell))
	g711.PCMToULaw(ulaw, farewell)
	prov := scriptedProvider(t, func(c *websocket.Conn) {
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"agent_tool_response","agent_tool_response":{"tool_name":"end_call","tool_call_id":"t1","tool_type":"system","is_error":false,"is_called":true,"event_id":1}}`))
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"audio","audio_event":{"audio_base_64":"`+base64.StdEncoding.EncodeToString(ulaw)+`","event_id":1}}`))
		// and no close: scriptedProvider keeps the socket open
	})
	r := newRig(t, rigOpts{providerURL: prov, endCallGrace: 500 * time.Millisecond})
	start := time.Now()
	r.connect("PCMU")
	select {
	case <-r.sess.Done():
	case <-time.After(4 * time.Second):
		t.Fatal("the call did not end")
	}
	if e := r.sess.End(); e.Reason != callpath.AgentHangup {
		t.Fatalf("end %+v", e)
	}
	if heard := len(loud(r.phone.audioSince(start))); heard < 8000*7/10 {
		t.Fatalf("%d loud samples of the 0.8 s farewell were heard before the end", heard)
	}
}
