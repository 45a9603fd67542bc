package openai

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"

	"github.com/cxco/gateway/bridge/internal/b64"
)

// Client events the gateway sends (the GA Realtime API's client events).

// sessionUpdate configures the session: the agent's instructions, its voice,
// G.711 µ-law both ways, turn detection (server_vad, or semantic_vad) that
// answers at the end of the caller's turn and cancels the agent's reply when
// the caller speaks over it, transcription of the caller, and the gateway's tools.
func sessionUpdate(info *callpath.Info, voice string) []byte {
	a, cfg := info.Agent, info.Config
	td := map[string]any{"type": "server_vad", "create_response": true, "interrupt_response": true}
	if cfg.TurnDetection == store.TurnSemanticVAD {
		td = map[string]any{"type": "semantic_vad", "create_response": true, "interrupt_response": true}
	}
	transcription := map[string]any{"model": DefaultTranscriptionModel}
	if a.Language != "" {
		transcription["language"] = a.Language
	}
	tools := []any{map[string]any{"type": "function", "name": bridge.ToolEndCall,
		"description": "End the phone call. Say goodbye to the caller first, in the same turn.",
		"parameters":  map[string]any{"type": "object", "properties": map[string]any{}}}}
	if len(cfg.Transfer.Destinations) > 0 {
		tools = append(tools, transferTool(cfg.Transfer.Destinations))
	}
	return mustJSON(map[string]any{"type": "session.update", "session": map[string]any{
		"type":              "realtime",
		"instructions":      instructions(info),
		"output_modalities": []string{"audio"},
		"audio": map[string]any{
			"input": map[string]any{
				"format":         map[string]any{"type": "audio/pcmu"},
				"transcription":  transcription,
				"turn_detection": td,
			},
			"output": map[string]any{"format": map[string]any{"type": "audio/pcmu"}, "voice": voice},
		},
		"tools":       tools,
		"tool_choice": "auto",
	}})
}

// instructions are the agent's personality, with what it knows of the call.
func instructions(info *callpath.Info) string {
	var b strings.Builder
	b.WriteString(info.Agent.Personality)
	b.WriteString("\n\nYou are on a phone call")
	if info.Caller != "" && info.Caller != callpath.CallerWebRTC {
		b.WriteString(" with " + info.Caller)
	}
	b.WriteString(". Keep your answers short and spoken.")
	if l := info.Agent.Language; l != "" && l != "en" {
		b.WriteString(" Speak the language whose ISO 639-1 code is " + l + ".")
	}
	return b.String()
}

// transferTool is the function the agent calls to hand the caller to a human:
// the destination one of the agent's (an enum), described with its condition.
func transferTool(dests []store.TransferDestination) map[string]any {
	var b strings.Builder
	b.WriteString("Transfer the caller to a human. Call it only when one of these conditions is met, with that destination:")
	enum := make([]any, 0, len(dests))
	for _, d := range dests {
		enum = append(enum, d.Number)
		b.WriteString("\n- " + d.Number)
		if d.Label != "" {
			b.WriteString(" (" + d.Label + ")")
		}
		b.WriteString(": " + d.Condition)
	}
	b.WriteString("\nTell the caller you are transferring them before you call it.")
	return map[string]any{"type": "function", "name": bridge.ToolTransfer, "description": b.String(),
		"parameters": map[string]any{"type": "object", "required": []any{"destination", "reason"}, "properties": map[string]any{
			"destination": map[string]any{"type": "string", "enum": enum, "description": "One of the listed destinations, exactly as written."},
			"reason":      map[string]any{"type": "string", "description": "Why the caller is being transferred, in a few words."},
		}}}
}

// openingLine asks for the first response: the agent greets the caller with
// its opening line.
func openingLine(text string) []byte {
	return mustJSON(map[string]any{"type": "response.create", "response": map[string]any{
		"instructions": "Greet the caller by saying exactly this, and nothing else: \"" + text + "\""}})
}

// sayOnly asks for a response that says text and nothing else (a voicemail
// message). The Realtime API has no text-to-speech mode: a response is the
// model's, steered by response.create's response.instructions (the GA client
// event; it applies to this response only, the session's instructions stay),
// so the text is quoted and the model told to say it verbatim — what OpenAI's
// Realtime prompting guide advises for exact wording. out-of-band is not used:
// the message belongs in the conversation (its transcript is the record's).
func sayOnly(text string) []byte {
	return mustJSON(map[string]any{"type": "response.create", "response": map[string]any{
		"instructions": "You are leaving a voicemail message; no one is listening live. Say exactly this, word for word, and nothing else: \"" + text + "\""}})
}

// systemMessage adds context the agent does not answer.
func systemMessage(text string) []byte {
	return mustJSON(map[string]any{"type": "conversation.item.create", "item": map[string]any{
		"type": "message", "role": "system", "content": []any{map[string]any{"type": "input_text", "text": text}}}})
}

// userMessage adds a user turn in text.
func userMessage(text string) []byte {
	return mustJSON(map[string]any{"type": "conversation.item.create", "item": map[string]any{
		"type": "message", "role": "user", "content": []any{map[string]any{"type": "input_text", "text": text}}}})
}

var responseCreate = []byte(`{"type":"response.create"}`)

func truncate(itemID string, ms int) []byte {
	return mustJSON(map[string]any{"type": "conversation.item.truncate", "item_id": itemID, "content_index": 0, "audio_end_ms": ms})
}

func functionOutput(callID, output string) []byte {
	return mustJSON(map[string]any{"type": "conversation.item.create", "item": map[string]any{
		"type": "function_call_output", "call_id": callID, "output": output}})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// conversation is one Realtime session (bridge.Conversation).
type conversation struct {
	conn  *websocket.Conn
	id    string
	chunk int
	early [][]byte
	log   *slog.Logger

	// Owned by the reader.
	current  *item            // the assistant item whose audio plays now
	items    map[string]*item // assistant items with audio, by id
	speaking bool             // the caller is speaking (speech_started..stopped)
	usage    usageTotals
	usageMu  sync.Mutex
	deltaBuf []byte

	// Shared with ToolResult (other goroutines).
	mu      sync.Mutex
	active  bool              // a response is in progress
	pending bool              // a function output waits for response.done to be answered
	calls   map[string]string // call_id -> function name
}

// item is an assistant message item whose audio the caller hears.
type item struct {
	id         string
	bytes      int    // µ-law bytes received: 8 a millisecond
	truncated  int    // ms heard when the caller cut in (-1: not cut)
	transcript string // when done
	partial    string // the transcript's deltas so far
	recorded   bool   // its transcript entry is written
}

func (c *conversation) Conn() *websocket.Conn { return c.conn }
func (c *conversation) ID() string            { return c.id }
func (c *conversation) Format() media.Format  { return media.FormatULaw8k }
func (c *conversation) ChunkBytes() int       { return max(c.chunk, 160) }
func (c *conversation) Early() [][]byte       { return c.early }

// AppendAudio implements bridge.Conversation: input_audio_buffer.append.
func (c *conversation) AppendAudio(dst, chunk []byte) []byte {
	dst = append(dst[:0], `{"type":"input_audio_buffer.append","audio":"`...)
	n := b64.EncodedLen(len(chunk))
	start := len(dst)
	dst = slices.Grow(dst, n+2)[:start+n]
	b64.Encode(dst[start:], chunk)
	return append(dst, `"}`...)
}

// Keypad implements bridge.Conversation: a user turn and a response (after
// the one under way, if any), or a system message the agent does not answer.
func (c *conversation) Keypad(text string, mode store.KeypadMode) [][]byte {
	if mode == store.KeypadContextualUpdate {
		return [][]byte{systemMessage(text)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active {
		c.pending = true // answered at response.done
		return [][]byte{userMessage(text)}
	}
	return [][]byte{userMessage(text), responseCreate}
}

// ToolResult implements bridge.Conversation: the function's output, then a
// response so the agent says what happened (after the response under way, if
// any); end_call gets its output and no response: the call is ending.
func (c *conversation) ToolResult(id, result string, isError bool) [][]byte {
	if isError {
		result = "Error: " + result
	}
	out := [][]byte{functionOutput(id, result)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls[id] == bridge.ToolEndCall {
		return out
	}
	if c.active {
		c.pending = true
		return out
	}
	return append(out, responseCreate)
}

var (
	deltaKey  = []byte(`"delta":"`)
	typeDelta = [][]byte{[]byte(`"type":"response.output_audio.delta"`), []byte(`"type":"response.audio.delta"`)} // GA; the beta's name
)

// Handle implements bridge.Conversation.
func (c *conversation) Handle(msg []byte, ev bridge.Events) {
	if bytes.Contains(msg, typeDelta[0]) || bytes.Contains(msg, typeDelta[1]) {
		c.onAudioDelta(msg, ev) // the frequent one, read without decoding the event
		return
	}
	var e serverEvent
	if err := json.Unmarshal(msg, &e); err != nil {
		c.log.Warn("unreadable OpenAI event", "err", err)
		return
	}
	switch e.Type {
	case "response.output_audio.delta", "response.audio.delta": // spaced JSON
		c.onAudioDelta(msg, ev)
	case "input_audio_buffer.speech_started":
		c.speaking = true
		c.onBargeIn(ev)
	case "input_audio_buffer.speech_stopped":
		c.speaking = false
	case "response.output_item.added":
		if e.Item != nil && e.Item.Type == "function_call" {
			c.mu.Lock()
			c.calls[e.Item.CallID] = e.Item.Name
			c.mu.Unlock()
		}
	case "response.created":
		c.mu.Lock()
		c.active = true
		c.mu.Unlock()
	case "response.output_audio_transcript.delta", "response.audio_transcript.delta":
		it := c.items[e.ItemID]
		if it == nil {
			it = &item{id: e.ItemID, truncated: -1}
			c.items[e.ItemID] = it
		}
		it.partial += e.Delta
	case "response.output_audio_transcript.done", "response.audio_transcript.done":
		c.onTranscript(e.ItemID, e.Transcript, ev)
	case "conversation.item.input_audio_transcription.completed":
		ev.Transcript(store.RoleUser, e.Transcript)
	case "response.function_call_arguments.done":
		c.onFunctionCall(e, ev)
	case "response.done":
		c.onResponseDone(e, ev)
	case "conversation.item.truncated":
		c.log.Debug("item truncated", "item_id", e.ItemID, "audio_end_ms", e.AudioEndMS)
	case "error":
		if e.Error != nil {
			c.log.Warn("OpenAI error", "type", e.Error.Type, "code", e.Error.Code, "message", e.Error.Message)
		}
	}
}

// onAudioDelta plays an audio delta: the fast path, reading item_id and delta
// without decoding the whole event.
func (c *conversation) onAudioDelta(msg []byte, ev bridge.Events) {
	id := stringField(msg, `"item_id":"`)
	i := bytes.Index(msg, deltaKey)
	if i < 0 || id == "" {
		return
	}
	rest := msg[i+len(deltaKey):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return
	}
	b64 := rest[:end]
	need := base64.StdEncoding.DecodedLen(len(b64))
	if cap(c.deltaBuf) < need {
		c.deltaBuf = make([]byte, need)
	}
	n, err := base64.StdEncoding.Decode(c.deltaBuf[:need], b64)
	if err != nil {
		return
	}
	it := c.items[id]
	if it == nil {
		it = &item{id: id, truncated: -1}
		c.items[id] = it
	}
	if it.truncated >= 0 {
		return // the caller cut in: what is still coming was never heard
	}
	if c.current != it {
		c.current = it
		ev.ReplyStarted()
	}
	it.bytes += n
	ev.Audio(c.deltaBuf[:n])
}

// onBargeIn: the caller started speaking. What is queued of the agent's reply
// is dropped at once, and if the caller had not heard all of it, the item is
// truncated at the milliseconds they heard, so the model knows what was not said.
func (c *conversation) onBargeIn(ev bridge.Events) {
	heard := ev.Interrupt()
	it := c.current
	if it == nil || it.truncated >= 0 {
		return
	}
	ms := min(int(heard.Milliseconds()), it.bytes/8)
	if ms >= it.bytes/8 {
		c.current = nil
		return // all of it was heard
	}
	it.truncated = ms
	c.current = nil
	ev.Send(truncate(it.id, ms))
	if it.recorded {
		ev.CorrectAgent(interrupted(it.transcript, ms))
	}
}

// Finish implements bridge.Finisher: the call ended while the agent was
// speaking, before OpenAI sent that reply's whole transcript (it comes once the
// reply's audio is done): what it had sent of it is recorded, marked cut off.
func (c *conversation) Finish(ev bridge.Events) {
	it := c.current
	if it == nil || it.recorded || it.partial == "" {
		return
	}
	it.recorded = true
	ev.Transcript(store.RoleAgent, it.partial+" [cut off: the call ended]")
}

// interrupted is the transcript of a reply the caller cut off: the model's text
// (OpenAI does not say which words were heard) and where it was cut.
func interrupted(text string, ms int) string {
	return text + " [interrupted after " + strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + " s]"
}

func (c *conversation) onTranscript(itemID, text string, ev bridge.Events) {
	it := c.items[itemID]
	if it == nil {
		it = &item{id: itemID, truncated: -1}
		c.items[itemID] = it
	}
	it.transcript, it.recorded = text, true
	if it.truncated >= 0 {
		text = interrupted(text, it.truncated)
	}
	ev.Transcript(store.RoleAgent, text)
}

func (c *conversation) onFunctionCall(e serverEvent, ev bridge.Events) {
	var args map[string]any
	if e.Arguments != "" {
		if err := json.Unmarshal([]byte(e.Arguments), &args); err != nil {
			c.log.Warn("function call with unreadable arguments", "name", e.Name, "err", err)
		}
	}
	// The event names no function: response.output_item.added did.
	c.mu.Lock()
	name := c.calls[e.CallID]
	if name == "" {
		name = e.Name
		c.calls[e.CallID] = name
	}
	c.mu.Unlock()
	ev.ToolCall(name, e.CallID, args)
}

func (c *conversation) onResponseDone(e serverEvent, ev bridge.Events) {
	if e.Response != nil {
		c.usageMu.Lock()
		c.usage.add(e.Response.Usage)
		c.usageMu.Unlock()
		for _, o := range e.Response.Output {
			if o.Type == "function_call" && o.CallID != "" {
				c.mu.Lock()
				c.calls[o.CallID] = o.Name
				c.mu.Unlock()
			}
		}
	}
	c.mu.Lock()
	c.active = false
	send := c.pending
	c.pending = false
	c.mu.Unlock()
	if send {
		ev.Send(responseCreate)
	}
}

// Usage implements bridge.Usage: the session's tokens from every response.done,
// as metadata_.llm_usage.realtime and llm_tokens (the total).
func (c *conversation) Usage() map[string]any {
	c.usageMu.Lock()
	defer c.usageMu.Unlock()
	u := c.usage
	if u.total == 0 {
		return nil
	}
	return map[string]any{"llm_tokens": u.total, "llm_usage": map[string]any{"realtime": map[string]any{
		"input": u.input, "input_cache_read": u.cached, "input_audio": u.inAudio, "input_text": u.inText,
		"output_total": u.output, "output_audio": u.outAudio, "output_text": u.outText, "responses": u.responses}}}
}

type usageTotals struct {
	input, cached, inAudio, inText, output, outAudio, outText, total, responses int
}

func (t *usageTotals) add(u *usage) {
	t.responses++
	if u == nil {
		return
	}
	t.input += u.InputTokens
	t.output += u.OutputTokens
	t.total += u.TotalTokens
	if d := u.InputDetails; d != nil {
		t.cached += d.CachedTokens
		t.inAudio += d.AudioTokens
		t.inText += d.TextTokens
	}
	if d := u.OutputDetails; d != nil {
		t.outAudio += d.AudioTokens
		t.outText += d.TextTokens
	}
}

// serverEvent is the part of a server event the gateway reads.
type serverEvent struct {
	Type       string `json:"type"`
	ItemID     string `json:"item_id"`
	Transcript string `json:"transcript"`
	Delta      string `json:"delta"`
	CallID     string `json:"call_id"`
	Name       string `json:"name"`
	Arguments  string `json:"arguments"`
	AudioEndMS int    `json:"audio_end_ms"`
	Item       *struct {
		Type   string `json:"type"`
		Name   string `json:"name"`
		CallID string `json:"call_id"`
	} `json:"item"`
	Response *struct {
		Status string `json:"status"`
		Usage  *usage `json:"usage"`
		Output []struct {
			Type   string `json:"type"`
			Name   string `json:"name"`
			CallID string `json:"call_id"`
		} `json:"output"`
	} `json:"response"`
	Error *struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type usage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
	InputDetails *struct {
		CachedTokens int `json:"cached_tokens"`
		AudioTokens  int `json:"audio_tokens"`
		TextTokens   int `json:"text_tokens"`
	} `json:"input_token_details"`
	OutputDetails *struct {
		AudioTokens int `json:"audio_tokens"`
		TextTokens  int `json:"text_tokens"`
	} `json:"output_token_details"`
}

// eventType reads an event's type.
func eventType(msg []byte) string {
	var e struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(msg, &e)
	return e.Type
}

// stringField is the first value of a string field given as `"name":"`
// (values without escapes: ids and types).
func stringField(msg []byte, key string) string {
	i := bytes.Index(msg, []byte(key))
	if i < 0 {
		return ""
	}
	rest := msg[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

func sessionID(msg []byte) string {
	var e struct {
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	_ = json.Unmarshal(msg, &e)
	return e.Session.ID
}

func errorMessage(msg []byte) string {
	var e serverEvent
	if json.Unmarshal(msg, &e) != nil || e.Error == nil {
		return string(msg)
	}
	return e.Error.Message
}

var (
	_ bridge.Conversation = (*conversation)(nil)
	_ bridge.Usage        = (*conversation)(nil)
)
