package openaisim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge/internal/simaudio"
)

// Each socket runs two goroutines: the HTTP handler's reads client events and
// runs the VAD on the audio it appends; the agent's owns the session and
// writes every server event (the audio pacer is a timer in its loop). They talk
// through a bounded queue.

type cmdKind uint8

const (
	kEvent cmdKind = iota + 1
	kSpeechStart
	kUtterance
	kClosed
)

type cmd struct {
	kind cmdKind
	ev   map[string]any
	pos  time.Duration // the client's audio clock
	dur  time.Duration // an utterance's length
	pcm  []int16       // its audio, at the input rate
	rate int
}

// readerCfg is what the reader needs of the session (the agent sets it).
type readerCfg struct {
	in  simaudio.Format
	vad bool
}

type conn struct {
	s   *Server
	ws  *websocket.Conn
	rec *Session

	cmds   chan cmd
	cfg    atomic.Pointer[readerCfg]
	closed chan struct{}

	// Owned by the agent.
	sess        map[string]any
	out         simaudio.Format
	items       map[string]*simItem
	lastItem    *simItem
	resp        *response
	pace        *time.Timer
	inMS        int    // caller audio since the last response, for its usage
	n           int    // ids handed out
	pendingUser string // the item id speech_started announced
}

type simItem struct {
	id, typ, role string
	text          string
	audioBytes    int // assistant audio sent
	out           simaudio.Format
}

type response struct {
	id, itemID string
	text       string
	audio      []byte
	off, chunk int
	calls      []FunctionCall
	start      time.Time // the first audio chunk sent
	inTokens   int
}

func newConn(s *Server, ws *websocket.Conn, rec *Session) *conn {
	c := &conn{s: s, ws: ws, rec: rec, cmds: make(chan cmd, 256), closed: make(chan struct{}), items: map[string]*simItem{}}
	c.sess = defaultSession(rec)
	c.applyFormats()
	return c
}

// defaultSession is the session as session.created shows it (reference:
// audio/pcm at 24 kHz, server_vad, voice alloy).
func defaultSession(rec *Session) map[string]any {
	return map[string]any{
		"id": rec.ID, "object": "realtime.session", "type": "realtime", "model": rec.Model,
		"output_modalities": []any{"audio"}, "instructions": defaultInstructionsSim, "tools": []any{}, "tool_choice": "auto",
		"max_output_tokens": "inf", "tracing": nil, "prompt": nil, "expires_at": float64(time.Now().Add(time.Hour).Unix()),
		"audio": map[string]any{
			"input": map[string]any{"format": map[string]any{"type": "audio/pcm", "rate": float64(24000)}, "transcription": nil, "noise_reduction": nil,
				"turn_detection": map[string]any{"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": float64(300),
					"silence_duration_ms": float64(500), "create_response": true, "interrupt_response": true, "idle_timeout_ms": nil}},
			"output": map[string]any{"format": map[string]any{"type": "audio/pcm", "rate": float64(24000)}, "voice": "alloy", "speed": float64(1)},
		},
	}
}

func formatOf(f any) simaudio.Format {
	m, _ := f.(map[string]any)
	switch m["type"] {
	case "audio/pcmu":
		return simaudio.ULaw8000
	case "audio/pcma":
		return simaudio.Format{Name: "alaw_8000", Rate: 8000} // decoded as PCM below
	}
	return simaudio.PCM(24000)
}

// applyFormats takes the session's formats and VAD into effect.
func (c *conn) applyFormats() {
	audio, _ := c.sess["audio"].(map[string]any)
	in, _ := audio["input"].(map[string]any)
	out, _ := audio["output"].(map[string]any)
	c.out = formatOf(out["format"])
	c.cfg.Store(&readerCfg{in: formatOf(in["format"]), vad: in["turn_detection"] != nil})
}

func (c *conn) turnDetection() map[string]any {
	audio, _ := c.sess["audio"].(map[string]any)
	in, _ := audio["input"].(map[string]any)
	td, _ := in["turn_detection"].(map[string]any)
	return td
}

func boolOr(m map[string]any, k string, def bool) bool {
	if v, ok := m[k].(bool); ok {
		return v
	}
	return def
}

// run is the handler goroutine: it starts the agent and reads.
func (c *conn) run() {
	if d := time.Duration(c.s.delay.Load()); d > 0 {
		time.Sleep(d) // a slow service; SetConnectDelay is a test's fault injection
	}
	agentDone := make(chan struct{})
	go func() { defer close(agentDone); c.agent() }()
	c.read()
	c.cmds <- cmd{kind: kClosed}
	<-agentDone
	_ = c.ws.Close()
}

func (c *conn) read() {
	var det *simaudio.Detector
	var detFor simaudio.Format
	var pcm []int16
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		if c.s.opts.Observe != nil {
			c.s.opts.Observe(FromClient, msg)
		}
		var ev map[string]any
		if err := json.Unmarshal(msg, &ev); err != nil {
			c.cmds <- cmd{kind: kEvent, ev: map[string]any{"type": "\x00bad_json", "error": err.Error()}}
			continue
		}
		if ev["type"] != "input_audio_buffer.append" {
			c.cmds <- cmd{kind: kEvent, ev: ev}
			continue
		}
		b64, _ := ev["audio"].(string)
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			c.cmds <- cmd{kind: kEvent, ev: map[string]any{"type": "\x00bad_audio", "error": err.Error()}}
			continue
		}
		cfg := c.cfg.Load()
		if !cfg.vad {
			continue // no turn detection: the buffer waits for a commit the gateway never sends
		}
		if det == nil || detFor != cfg.in {
			detFor = cfg.in
			rate := cfg.in.Rate
			det = simaudio.NewDetector(rate,
				func(pos int64) {
					c.cmds <- cmd{kind: kSpeechStart, pos: time.Duration(pos) * time.Second / time.Duration(rate)}
				},
				func(n int64, utt []int16) {
					c.cmds <- cmd{kind: kUtterance, dur: time.Duration(n) * time.Second / time.Duration(rate), pcm: append([]int16(nil), utt...), rate: rate,
						pos: time.Duration(det.Total()) * time.Second / time.Duration(rate)}
				})
		}
		pcm = decode(cfg.in, pcm, raw)
		det.Feed(pcm)
	}
}

// decode reads audio in f (A-law is decoded as G.711 A-law).
func decode(f simaudio.Format, dst []int16, src []byte) []int16 {
	if f.Name == "alaw_8000" {
		return decodeALaw(dst, src)
	}
	return f.Decode(dst, src)
}

// agent owns the session: it handles the reader's commands and paces audio.
func (c *conn) agent() {
	c.send("session.created", map[string]any{"session": c.sess})
	c.pace = time.NewTimer(time.Hour)
	c.pace.Stop()
	defer c.pace.Stop()
	for {
		select {
		case m := <-c.cmds:
			switch m.kind {
			case kClosed:
				return
			case kEvent:
				c.handle(m.ev)
			case kSpeechStart:
				c.onSpeechStart(m.pos)
			case kUtterance:
				c.onUtterance(m)
			}
		case <-c.pace.C:
			c.pump()
		}
	}
}

func (c *conn) nextID(prefix string) string {
	c.n++
	return fmt.Sprintf("%s_%s%03d", prefix, c.rec.ID[5:13], c.n)
}

// send writes one server event (the agent's goroutine only).
func (c *conn) send(typ string, fields map[string]any) {
	ev := map[string]any{"type": typ, "event_id": c.nextID("event")}
	for k, v := range fields {
		ev[k] = v
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	if c.s.opts.Observe != nil {
		c.s.opts.Observe(FromServer, b)
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		_ = c.ws.NetConn().Close()
	}
}

// fail is an error event: the session goes on (reference: "Most errors are
// recoverable and the session will stay open").
func (c *conn) fail(code, msg string, clientEvent map[string]any) {
	e := map[string]any{"type": "invalid_request_error", "code": code, "message": msg, "param": nil, "event_id": nil}
	if id, ok := clientEvent["event_id"].(string); ok {
		e["event_id"] = id
	}
	c.s.record(c.rec, func(r *Session) { r.Errors = append(r.Errors, code+": "+msg) })
	c.send("error", map[string]any{"error": e})
}

func (c *conn) handle(ev map[string]any) {
	typ, _ := ev["type"].(string)
	if problem := checkClientEvent(ev); problem != nil {
		c.fail(problem.code, problem.msg, ev)
		return
	}
	switch typ {
	case "session.update":
		c.onSessionUpdate(ev)
	case "conversation.item.create":
		c.onItemCreate(ev)
	case "conversation.item.truncate":
		c.onTruncate(ev)
	case "response.create":
		c.onResponseCreate(ev)
	case "response.cancel":
		if c.resp != nil {
			c.cancel("client_cancelled")
		}
	case "input_audio_buffer.clear":
		c.send("input_audio_buffer.cleared", nil)
	case "input_audio_buffer.commit":
		c.fail("input_audio_buffer_commit_empty", "Error committing input audio buffer: buffer too small.", ev)
	case "output_audio_buffer.clear":
		c.fail("invalid_value", "output_audio_buffer.clear is only supported on WebRTC and SIP connections.", ev)
	}
}

func (c *conn) onSessionUpdate(ev map[string]any) {
	upd, _ := ev["session"].(map[string]any)
	merge(c.sess, upd)
	c.applyFormats()
	c.s.record(c.rec, func(r *Session) { r.Config = cloneMap(c.sess); r.Updates++ })
	c.send("session.updated", map[string]any{"session": c.sess})
}

// merge sets the fields of upd present in it (nested objects merge; null
// clears).
func merge(dst, upd map[string]any) {
	for k, v := range upd {
		sub, isMap := v.(map[string]any)
		cur, curMap := dst[k].(map[string]any)
		if isMap && curMap && k != "format" && k != "turn_detection" {
			merge(cur, sub)
			continue
		}
		dst[k] = v
	}
}

func (c *conn) onSpeechStart(pos time.Duration) {
	id := c.nextID("item")
	c.s.record(c.rec, func(r *Session) { r.Utterances++ })
	c.pendingUser = id
	startMS := max(int(pos.Milliseconds())-100-300, 0) // confirmed after 100 ms; 300 ms of prefix padding
	c.send("input_audio_buffer.speech_started", map[string]any{"audio_start_ms": startMS, "item_id": id})
	td := c.turnDetection()
	if c.resp != nil && c.playing(time.Now()) && boolOr(td, "interrupt_response", true) {
		c.cancel("turn_detected")
	}
}

// playing: the response's audio still plays at the client, which plays it in
// real time from its first chunk.
func (c *conn) playing(now time.Time) bool {
	r := c.resp
	return r != nil && !r.start.IsZero() && now.Before(r.start.Add(c.out.Duration(len(r.audio))))
}

func (c *conn) onUtterance(m cmd) {
	id := c.pendingUser
	if id == "" {
		id = c.nextID("item")
	}
	c.pendingUser = ""
	endMS := int(m.pos.Milliseconds())
	c.send("input_audio_buffer.speech_stopped", map[string]any{"audio_end_ms": endMS, "item_id": id})
	prev := ""
	if c.lastItem != nil {
		prev = c.lastItem.id
	}
	c.send("input_audio_buffer.committed", map[string]any{"item_id": id, "previous_item_id": nullable(prev)})
	it := &simItem{id: id, typ: "message", role: "user"}
	c.addItem(it, map[string]any{"id": id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
		"content": []any{map[string]any{"type": "input_audio", "transcript": nil}}}, prev)
	secs := math.Round(m.dur.Seconds()*10) / 10
	c.inMS += int(m.dur.Milliseconds())
	heard := fmt.Sprintf("(caller spoke %.1f s)", secs)
	audio, _ := c.sess["audio"].(map[string]any)
	in, _ := audio["input"].(map[string]any)
	if in["transcription"] != nil {
		c.send("conversation.item.input_audio_transcription.completed", map[string]any{"item_id": id, "content_index": 0,
			"transcript": heard, "usage": map[string]any{"type": "duration", "seconds": secs}})
	}
	c.s.record(c.rec, func(r *Session) { r.Transcript = append(r.Transcript, Turn{Role: "user", Text: heard}) })
	if !boolOr(c.turnDetection(), "create_response", true) || c.resp != nil {
		return
	}
	text := fmt.Sprintf("I heard you for %.1f seconds.", secs)
	c.startResponse(text, c.out.Transcode(m.pcm, m.rate), nil)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// addItem adds an item to the conversation: conversation.item.added, then
// conversation.item.done (GA reference).
func (c *conn) addItem(it *simItem, body map[string]any, prev string) {
	c.items[it.id] = it
	c.lastItem = it
	c.send("conversation.item.added", map[string]any{"previous_item_id": nullable(prev), "item": body})
	c.send("conversation.item.done", map[string]any{"previous_item_id": nullable(prev), "item": body})
}

func (c *conn) onItemCreate(ev map[string]any) {
	item, _ := ev["item"].(map[string]any)
	id, _ := item["id"].(string)
	if id == "" {
		id = c.nextID("item")
		item["id"] = id
	}
	item["object"] = "realtime.item"
	item["status"] = "completed"
	prev := ""
	if c.lastItem != nil {
		prev = c.lastItem.id
	}
	typ, _ := item["type"].(string)
	it := &simItem{id: id, typ: typ}
	switch typ {
	case "message":
		it.role, _ = item["role"].(string)
		for _, p := range asList(item["content"]) {
			pm, _ := p.(map[string]any)
			t, _ := pm["text"].(string)
			it.text += t
		}
		c.s.record(c.rec, func(r *Session) {
			if it.role == "system" {
				r.SystemTexts = append(r.SystemTexts, it.text)
			} else {
				r.UserTexts = append(r.UserTexts, it.text)
			}
		})
	case "function_call_output":
		callID, _ := item["call_id"].(string)
		out, _ := item["output"].(string)
		it.text = out
		c.s.record(c.rec, func(r *Session) {
			r.FunctionOutputs = append(r.FunctionOutputs, FunctionOutput{CallID: callID, Output: out})
		})
	}
	c.addItem(it, item, prev)
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func (c *conn) onTruncate(ev map[string]any) {
	id, _ := ev["item_id"].(string)
	endMS := int(ev["audio_end_ms"].(float64))
	it := c.items[id]
	t := Truncation{ItemID: id, AudioEndMS: endMS}
	switch {
	case it == nil:
		c.fail("item_not_found", fmt.Sprintf("Item with item_id not found: %s", id), ev)
	case it.role != "assistant":
		c.fail("invalid_value", "Only assistant message items can be truncated.", ev)
	default:
		t.AudioMS = int(it.out.Duration(it.audioBytes).Milliseconds())
		if endMS > t.AudioMS {
			c.fail("invalid_value", fmt.Sprintf("Audio content of %dms is already shorter than %dms", t.AudioMS, endMS), ev)
			break
		}
		t.OK = true
		it.text = "" // the reference: truncating deletes the server-side transcript
		c.send("conversation.item.truncated", map[string]any{"item_id": id, "content_index": 0, "audio_end_ms": endMS})
	}
	c.s.record(c.rec, func(r *Session) { r.Truncations = append(r.Truncations, t) })
}

var quoted = regexp.MustCompile(`"([^"]+)"`)

func (c *conn) onResponseCreate(ev map[string]any) {
	if c.resp != nil {
		c.fail("conversation_already_has_active_response", "Conversation already has an active response in progress: "+c.resp.id+
			". Wait until the response is finished before creating a new one.", ev)
		return
	}
	r, _ := ev["response"].(map[string]any)
	instructions, _ := r["instructions"].(string)
	text := "How can I help?"
	var calls []FunctionCall
	switch last := c.lastItem; {
	case instructions != "" && quoted.MatchString(instructions):
		text = quoted.FindStringSubmatch(instructions)[1]
	case last != nil && last.typ == "function_call_output":
		text = "Done."
	case last != nil && last.typ == "message" && last.role == "user":
		text = "You wrote: " + last.text
		switch {
		case c.s.hookOn(HookHashEndsCall) && strings.Contains(last.text, "#") && c.hasTool("end_call"):
			text = "Goodbye, thank you for calling."
			calls = append(calls, FunctionCall{CallID: c.nextID("call"), Name: "end_call", Arguments: "{}"})
		case c.s.hookOn(HookZeroCallsTransfer) && strings.Contains(last.text, "0") && c.hasTool("transfer_call"):
			dest := c.firstDestination()
			text = "Transferring you now."
			args, _ := json.Marshal(map[string]any{"destination": dest, "reason": "the caller pressed 0"})
			calls = append(calls, FunctionCall{CallID: c.nextID("call"), Name: "transfer_call", Arguments: string(args)})
		}
	}
	c.startResponse(text, simaudio.Voice(c.out, text), calls)
}

func (c *conn) tool(name string) map[string]any {
	for _, t := range asList(c.sess["tools"]) {
		tm, _ := t.(map[string]any)
		if tm["name"] == name {
			return tm
		}
	}
	return nil
}

func (c *conn) hasTool(name string) bool { return c.tool(name) != nil }

// firstDestination is the first value of transfer_call's destination enum.
func (c *conn) firstDestination() string {
	params, _ := c.tool("transfer_call")["parameters"].(map[string]any)
	props, _ := params["properties"].(map[string]any)
	dest, _ := props["destination"].(map[string]any)
	if enum := asList(dest["enum"]); len(enum) > 0 {
		s, _ := enum[0].(string)
		return s
	}
	return ""
}

// startResponse begins a response that says text with audio (output format),
// then makes the function calls.
func (c *conn) startResponse(text string, audio []byte, calls []FunctionCall) {
	r := &response{id: c.nextID("resp"), itemID: c.nextID("item"), text: text, audio: audio, calls: calls,
		inTokens: c.inMS/50 + 40}
	c.inMS = 0
	c.resp = r
	c.s.record(c.rec, func(s *Session) { s.Responses++ })
	prev := ""
	if c.lastItem != nil {
		prev = c.lastItem.id
	}
	c.send("response.created", map[string]any{"response": c.responseObject(r, "in_progress", nil)})
	it := &simItem{id: r.itemID, typ: "message", role: "assistant", out: c.out}
	c.items[it.id] = it
	c.lastItem = it
	c.send("response.output_item.added", map[string]any{"response_id": r.id, "output_index": 0, "item": c.messageItem(r, "in_progress")})
	c.send("conversation.item.added", map[string]any{"previous_item_id": nullable(prev), "item": c.messageItem(r, "in_progress")})
	c.send("response.content_part.added", map[string]any{"response_id": r.id, "item_id": r.itemID, "output_index": 0, "content_index": 0,
		"part": map[string]any{"type": "audio", "transcript": ""}})
	c.pump()
}

func (c *conn) messageItem(r *response, status string) map[string]any {
	return map[string]any{"id": r.itemID, "object": "realtime.item", "type": "message", "role": "assistant", "status": status,
		"content": []any{map[string]any{"type": "output_audio", "transcript": r.text}}}
}

func (c *conn) audioEvent() string {
	if c.s.opts.BetaAudioEvents {
		return "response.audio.delta"
	}
	return "response.output_audio.delta"
}

// chunkPattern are the lengths of the audio deltas, in turn.
var chunkPattern = []time.Duration{110 * time.Millisecond, 270 * time.Millisecond, 190 * time.Millisecond, 300 * time.Millisecond}

const leadIn = 500 * time.Millisecond

// pump sends the response's next audio: the first 0.5 s at once, the rest at
// twice real time; then the response's end.
func (c *conn) pump() {
	r := c.resp
	if r == nil {
		return
	}
	now := time.Now()
	for r.off < len(r.audio) {
		n := min(c.out.Samples(chunkPattern[r.chunk%len(chunkPattern)])*c.out.BytesPerSample(), len(r.audio)-r.off)
		if r.start.IsZero() {
			r.start = now
			c.send("response.output_audio_transcript.delta", map[string]any{"response_id": r.id, "item_id": r.itemID,
				"output_index": 0, "content_index": 0, "delta": r.text})
		}
		c.send(c.audioEvent(), map[string]any{"response_id": r.id, "item_id": r.itemID, "output_index": 0, "content_index": 0,
			"delta": base64.StdEncoding.EncodeToString(r.audio[r.off : r.off+n])})
		r.off += n
		r.chunk++
		c.items[r.itemID].audioBytes = r.off
		if sent := c.out.Duration(r.off); sent > leadIn {
			// Twice real time from here: the next chunk when half its length has passed.
			due := r.start.Add(leadIn + (sent-leadIn)/2)
			if d := time.Until(due); d > 0 {
				c.pace.Reset(d)
				return
			}
		}
	}
	c.finish(r, "completed", nil)
}

// cancel ends the response under way: nothing more of it is sent.
func (c *conn) cancel(reason string) {
	r := c.resp
	c.pace.Stop()
	c.s.record(c.rec, func(s *Session) {
		s.Cancelled++
		s.Transcript = append(s.Transcript, Turn{Role: "agent", Text: r.text, Interrupted: true})
	})
	r.calls = nil
	c.finish(r, "cancelled", map[string]any{"type": "cancelled", "reason": reason})
}

// finish sends the end of a response: its parts done, its function calls, and
// response.done with its usage.
func (c *conn) finish(r *response, status string, details map[string]any) {
	c.resp = nil
	itemStatus := "completed"
	if status != "completed" {
		itemStatus = "incomplete"
	}
	c.send("response.output_audio.done", map[string]any{"response_id": r.id, "item_id": r.itemID, "output_index": 0, "content_index": 0})
	c.send("response.output_audio_transcript.done", map[string]any{"response_id": r.id, "item_id": r.itemID, "output_index": 0,
		"content_index": 0, "transcript": r.text})
	c.send("response.content_part.done", map[string]any{"response_id": r.id, "item_id": r.itemID, "output_index": 0, "content_index": 0,
		"part": map[string]any{"type": "audio", "transcript": r.text}})
	c.send("response.output_item.done", map[string]any{"response_id": r.id, "output_index": 0, "item": c.messageItem(r, itemStatus)})
	if status == "completed" {
		c.s.record(c.rec, func(s *Session) { s.Transcript = append(s.Transcript, Turn{Role: "agent", Text: r.text}) })
	}
	output := []any{c.messageItem(r, itemStatus)}
	for i, fc := range r.calls {
		id := c.nextID("item")
		item := map[string]any{"id": id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
			"name": fc.Name, "call_id": fc.CallID, "arguments": ""}
		c.send("response.output_item.added", map[string]any{"response_id": r.id, "output_index": i + 1, "item": item})
		c.send("response.function_call_arguments.delta", map[string]any{"response_id": r.id, "item_id": id, "output_index": i + 1,
			"call_id": fc.CallID, "delta": fc.Arguments})
		c.send("response.function_call_arguments.done", map[string]any{"response_id": r.id, "item_id": id, "output_index": i + 1,
			"call_id": fc.CallID, "arguments": fc.Arguments})
		item["status"], item["arguments"] = "completed", fc.Arguments
		c.send("response.output_item.done", map[string]any{"response_id": r.id, "output_index": i + 1, "item": item})
		output = append(output, item)
		c.items[id] = &simItem{id: id, typ: "function_call"}
		c.s.record(c.rec, func(s *Session) { s.FunctionCalls = append(s.FunctionCalls, fc) })
	}
	c.send("response.done", map[string]any{"response": c.responseObject(r, status, details, output...)})
}

// responseObject is a realtime.response; usage once it is done (simulated
// counts: an audio token per 50 ms, a text token per 4 characters).
func (c *conn) responseObject(r *response, status string, details map[string]any, output ...any) map[string]any {
	o := map[string]any{"id": r.id, "object": "realtime.response", "status": status, "status_details": details,
		"output": output, "output_modalities": []any{"audio"}, "conversation_id": "conv_" + c.rec.ID[5:13],
		"max_output_tokens": "inf", "metadata": nil, "usage": nil,
		"audio": map[string]any{"output": map[string]any{"format": c.currentFormat("output"), "voice": c.voice()}}}
	if output == nil {
		o["output"] = []any{}
	}
	if status != "in_progress" {
		outAudio := int(c.out.Duration(r.off).Milliseconds()) / 50
		outText := (len(r.text) + 3) / 4
		o["usage"] = map[string]any{"total_tokens": r.inTokens + outAudio + outText, "input_tokens": r.inTokens, "output_tokens": outAudio + outText,
			"input_token_details": map[string]any{"cached_tokens": r.inTokens / 2, "text_tokens": 40, "audio_tokens": r.inTokens - 40,
				"image_tokens": 0, "cached_tokens_details": map[string]any{"text_tokens": 20, "audio_tokens": r.inTokens/2 - 20, "image_tokens": 0}},
			"output_token_details": map[string]any{"text_tokens": outText, "audio_tokens": outAudio}}
	}
	return o
}

func (c *conn) currentFormat(dir string) any {
	audio, _ := c.sess["audio"].(map[string]any)
	d, _ := audio[dir].(map[string]any)
	return d["format"]
}

func (c *conn) voice() any {
	audio, _ := c.sess["audio"].(map[string]any)
	d, _ := audio["output"].(map[string]any)
	return d["voice"]
}
