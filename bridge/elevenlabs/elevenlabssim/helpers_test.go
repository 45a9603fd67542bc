package elevenlabssim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge/elevenlabs/contract"
	"github.com/cxco/gateway/media/audiotest"
)

const (
	testKey  = "sim-test-key"   // account acme
	testKey2 = "sim-test-key-2" // account acme too
	otherKey = "sim-other-key"  // account other
)

// env is a simulator on a real 127.0.0.1 listener.
type env struct {
	t     *testing.T
	sim   *Server
	srv   *httptest.Server
	ended chan Conversation // OnConversationEnd
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := &env{t: t, ended: make(chan Conversation, 1024)}
	if opts.PingInterval == 0 {
		opts.PingInterval = -1 // most tests do not want pings in the way
	}
	opts.Accounts = map[string][]string{"acme": {testKey, testKey2}, "other": {otherKey}}
	opts.OnConversationEnd = func(c Conversation) { e.ended <- c }
	if opts.Observe == nil {
		opts.Observe = contractCheck(t, true)
	}
	e.sim = New(opts)
	e.srv = httptest.NewServer(e.sim) // binds 127.0.0.1
	t.Cleanup(func() {
		_ = e.sim.Close()
		e.srv.Close()
	})
	return e
}

// contractCheck holds every websocket message either side sends to the AsyncAPI
// contract; what breaks it fails the test (reported once the simulator is closed).
// With clients false, only the simulator's messages are checked (for tests that
// send bad ones on purpose).
func contractCheck(t *testing.T, clients bool) func(Direction, []byte) {
	c, err := contract.Load()
	if err != nil {
		t.Fatal(err)
	}
	k := c.Checker()
	t.Cleanup(func() {
		errs := k.Close()
		for _, err := range errs[:min(len(errs), 5)] {
			t.Error(err)
		}
	})
	return func(d Direction, msg []byte) {
		if d == FromClient && !clients {
			return
		}
		k.Check(d == FromClient, msg)
	}
}

// agentBody is a public agent with end_call, in format both ways, asking for
// every event the tests read; toolIDs are its client tools.
func agentBody(first, format string, toolIDs ...string) map[string]any {
	if toolIDs == nil {
		toolIDs = []string{}
	}
	return map[string]any{
		"name": "test agent",
		"conversation_config": map[string]any{
			"agent": map[string]any{"first_message": first, "language": "en",
				"prompt": map[string]any{"prompt": "You are a test.", "tool_ids": toolIDs, "built_in_tools": map[string]any{
					"end_call": map[string]any{"type": "system", "name": "end_call", "description": "", "params": map[string]any{"system_tool_type": "end_call"}}}}},
			"asr": formatField("user_input_audio_format", format),
			"tts": func() map[string]any {
				m := formatField("agent_output_audio_format", format)
				m["voice_id"], m["model_id"] = "v1", "eleven_flash_v2"
				return m
			}(),
			"conversation": map[string]any{"client_events": []string{"conversation_initiation_metadata", "audio", "interruption",
				"user_transcript", "agent_response", "agent_response_correction", "client_tool_call", "agent_tool_response", "ping"}},
		},
		"platform_settings": map[string]any{"overrides": map[string]any{
			"conversation_config_override": map[string]any{"agent": map[string]any{"first_message": true}},
		}},
	}
}

func formatField(key, format string) map[string]any {
	if format == "" {
		return map[string]any{}
	}
	return map[string]any{key: format}
}

// transferTool is a client tool with an enum parameter, as a gateway declares one.
func transferTool(timeout int, dests ...string) map[string]any {
	enum := make([]any, len(dests))
	for i, d := range dests {
		enum[i] = d
	}
	return map[string]any{"tool_config": map[string]any{"type": "client", "name": "transfer_call", "description": "Transfer the caller.",
		"expects_response": true, "response_timeout_secs": timeout,
		"parameters": map[string]any{"type": "object", "required": []any{"destination", "reason"}, "properties": map[string]any{
			"destination": map[string]any{"type": "string", "description": "where", "enum": enum},
			"reason":      map[string]any{"type": "string", "description": "why"}}}}}
}

func (e *env) createTool(body map[string]any) string {
	e.t.Helper()
	code, b := e.do(http.MethodPost, "/v1/convai/tools", body)
	var out struct {
		ID string `json:"id"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &out) != nil || out.ID == "" {
		e.t.Fatalf("create tool: %d %s", code, b)
	}
	return out.ID
}

func (e *env) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	return e.doKey(testKey, method, path, body)
}

func (e *env) doKey(key, method, path string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if key != "" {
		req.Header.Set("xi-api-key", key)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (e *env) createAgent(body map[string]any) string {
	e.t.Helper()
	code, b := e.do(http.MethodPost, "/v1/convai/agents/create", body)
	var out struct {
		AgentID string `json:"agent_id"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &out) != nil || out.AgentID == "" {
		e.t.Fatalf("create agent: %d %s", code, b)
	}
	return out.AgentID
}

func (e *env) wsURL(agentID string) string {
	return "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/v1/convai/conversation?agent_id=" + agentID
}

// waitEnded waits for the conversation to end.
func (e *env) waitEnded(id string) Conversation {
	e.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-e.ended:
			if c.ID == id {
				return c
			}
		case <-deadline:
			e.t.Fatalf("conversation %s did not end", id)
		}
	}
}

// event is one server message.
type event struct {
	Type string `json:"type"`
	Meta *struct {
		ConversationID string `json:"conversation_id"`
		Out            string `json:"agent_output_audio_format"`
		In             string `json:"user_input_audio_format"`
	} `json:"conversation_initiation_metadata_event"`
	Audio *struct {
		B64     string `json:"audio_base_64"`
		EventID int64  `json:"event_id"`
	} `json:"audio_event"`
	UserTranscript *struct {
		Text    string `json:"user_transcript"`
		EventID int64  `json:"event_id"`
	} `json:"user_transcription_event"`
	AgentResponse *struct {
		Text    string `json:"agent_response"`
		EventID int64  `json:"event_id"`
	} `json:"agent_response_event"`
	Correction *struct {
		Original  string `json:"original_agent_response"`
		Corrected string `json:"corrected_agent_response"`
		EventID   int64  `json:"event_id"`
	} `json:"agent_response_correction_event"`
	Interruption *struct {
		EventID int64 `json:"event_id"`
	} `json:"interruption_event"`
	Ping *struct {
		EventID int64  `json:"event_id"`
		PingMS  *int64 `json:"ping_ms"`
	} `json:"ping_event"`
	ToolCall *struct {
		Name       string         `json:"tool_name"`
		ID         string         `json:"tool_call_id"`
		Parameters map[string]any `json:"parameters"`
		EventID    int64          `json:"event_id"`
	} `json:"client_tool_call"`
	ToolResponse *struct {
		Name    string `json:"tool_name"`
		Type    string `json:"tool_type"`
		IsError bool   `json:"is_error"`
		EventID int64  `json:"event_id"`
	} `json:"agent_tool_response"`
	Error *struct {
		Code      int    `json:"code"`
		Message   string `json:"message"`
		ErrorType string `json:"error_type"`
	} `json:"error_event"`

	raw string
}

// client is a test client: a goroutine reads every message into a channel.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	f      format // the agent's format, both ways unless out is set
	out    format
	events chan event
	err    error // why reading stopped, once events is closed
}

// signedURL gets a signed URL for the agent with key.
func (e *env) signedURL(key, agentID string) (int, string) {
	e.t.Helper()
	code, b := e.doKey(key, http.MethodGet, "/v1/convai/conversation/get-signed-url?agent_id="+agentID, nil)
	var out struct {
		URL string `json:"signed_url"`
	}
	_ = json.Unmarshal(b, &out)
	return code, out.URL
}

// dial opens a conversation with a public agent (no credentials), or with a
// private one through a signed URL, and sends init if given.
func (e *env) dial(agentID string, init map[string]any) *client {
	e.t.Helper()
	u := e.wsURL(agentID)
	if a, ok := e.sim.AgentByID(agentID); ok && valueAt(a.Platform, "auth", "enable_auth") == true {
		_, u = e.signedURL(testKey, agentID)
	}
	c, res, err := e.tryDialURL(u, nil)
	if err != nil {
		code := 0
		if res != nil {
			code = res.StatusCode
		}
		e.t.Fatalf("dial: %v (HTTP %d)", err, code)
	}
	if init != nil {
		c.send(init)
	}
	return c
}

func (e *env) tryDialURL(url string, h http.Header) (*client, *http.Response, error) {
	d := websocket.Dialer{Subprotocols: []string{"convai"}, HandshakeTimeout: 5 * time.Second}
	ws, res, err := d.Dial(url, h)
	if err != nil {
		return nil, res, err
	}
	c := &client{t: e.t, ws: ws, events: make(chan event, 4096), f: ulaw8000, out: ulaw8000}
	go func() {
		defer close(c.events)
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			var ev event
			if err := json.Unmarshal(msg, &ev); err != nil {
				c.err = err
				return
			}
			ev.raw = string(msg)
			c.events <- ev
		}
	}()
	e.t.Cleanup(func() { ws.Close() })
	return c, res, nil
}

func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Error(err) // not Fatal: clients also run on other goroutines
	}
}

// next returns the next message, pings included.
func (c *client) next() event {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatalf("socket ended: %v", c.err)
		}
		return ev
	case <-time.After(10 * time.Second):
		c.t.Fatal("no message within 10 s")
	}
	return event{}
}

// nextNoPing returns the next message that is not a ping.
func (c *client) nextNoPing() event {
	c.t.Helper()
	for {
		if ev := c.next(); ev.Type != "ping" {
			return ev
		}
	}
}

// expect returns the next non-ping message and checks its type.
func (c *client) expect(typ string) event {
	c.t.Helper()
	ev := c.nextNoPing()
	if ev.Type != typ {
		c.t.Fatalf("got %s, want %s: %.300s", ev.Type, typ, ev.raw)
	}
	return ev
}

// expectSkipping returns the next message of type typ, skipping pings and the
// other types given.
func (c *client) expectSkipping(typ string, skip ...string) event {
	c.t.Helper()
	for {
		ev := c.nextNoPing()
		if ev.Type == typ {
			return ev
		}
		if !slices.Contains(skip, ev.Type) {
			c.t.Fatalf("got %s, want %s: %.300s", ev.Type, typ, ev.raw)
		}
	}
}

// closed waits for the socket to end and returns why.
func (c *client) closed() error {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-c.events:
			if !ok {
				return c.err
			}
		case <-deadline:
			c.t.Fatal("socket still open after 10 s")
		}
	}
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// expectFailure checks that the conversation ends as the service ends one it
// fails: an error event of errType carrying code, then a close with that code.
func expectFailure(t *testing.T, c *client, code int, errType string) {
	t.Helper()
	ev := c.expect("error")
	if ev.Error.Code != code || ev.Error.ErrorType != errType {
		t.Errorf("error %+v", ev.Error)
	}
	if got := closeCode(c.closed()); got != code {
		t.Errorf("close %d, want %d", got, code)
	}
}

// response is one agent response as received.
type response struct {
	text     string
	pcm      []int16 // decoded, at the output rate
	chunks   []time.Duration
	eventIDs []int64
}

// readResponse reads an agent_response and its audio: want of audio in all.
// Pings are skipped; anything else fails the test.
func (c *client) readResponse(want time.Duration) response {
	c.t.Helper()
	var r response
	for r.text == "" || c.out.SampleTime(int64(len(r.pcm))) < want {
		ev := c.nextNoPing()
		switch ev.Type {
		case "agent_response":
			if r.text != "" {
				c.t.Fatalf("second agent_response %q after %v of audio", ev.AgentResponse.Text, c.out.SampleTime(int64(len(r.pcm))))
			}
			r.text = ev.AgentResponse.Text
		case "audio":
			b, err := base64.StdEncoding.DecodeString(ev.Audio.B64)
			if err != nil {
				c.t.Fatal(err)
			}
			r.pcm = append(r.pcm, c.out.Decode(nil, b)...)
			r.chunks = append(r.chunks, c.out.Duration(len(b)))
			r.eventIDs = append(r.eventIDs, ev.Audio.EventID)
		default:
			c.t.Fatalf("unexpected %s while reading a response: %.300s", ev.Type, ev.raw)
		}
	}
	return r
}

// sendPCM sends pcm (at the input format's rate) in chunks of chunk, as fast as
// the socket takes them.
func (c *client) sendPCM(pcm []int16, chunk time.Duration) {
	c.t.Helper()
	n := c.f.Samples(chunk)
	for len(pcm) > 0 {
		k := min(n, len(pcm))
		b := c.f.Encode(pcm[:k])
		pcm = pcm[k:]
		msg := `{"user_audio_chunk":"` + base64.StdEncoding.EncodeToString(b) + `"}`
		if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			c.t.Error(err)
			return
		}
	}
}

// tone is d of a sine at freq, -17 dBFS, at rate.
func tone(rate int, freq float64, d time.Duration) []int16 {
	pcm := make([]int16, int(int64(d)*int64(rate)/int64(time.Second)))
	t := audiotest.Tone{Rate: float64(rate), Freq: freq, Amplitude: 0.2}
	t.Fill(pcm)
	return pcm
}

func silence(rate int, d time.Duration) []int16 {
	return make([]int16, int(int64(d)*int64(rate)/int64(time.Second)))
}

func concat(parts ...[]int16) []int16 {
	var out []int16
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// initiation is conversation_initiation_client_data: dynamic variables, and a
// first_message override when first is set.
func initiation(first *string) map[string]any {
	m := map[string]any{
		"type":              "conversation_initiation_client_data",
		"dynamic_variables": map[string]any{"caller_number": "+15550001111", "conversation_id": "42"},
	}
	if first != nil {
		m["conversation_config_override"] = map[string]any{"agent": map[string]any{"first_message": *first}}
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// voiceLength is how long the agent's tone for text lasts.
func voiceLength(text string) time.Duration {
	return min(max(time.Duration(len([]rune(text)))*voicePerRune, voiceMin), voiceMax)
}
