package elevenlabssim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// cmd is what the reader tells the agent. It travels by value through a bounded
// channel.
type cmd struct {
	kind    cmdKind
	at      time.Time     // wall clock of the event
	pos     time.Duration // the caller's audio clock at the event
	dur     time.Duration // utterance length
	n       int64         // event_id of a pong
	isError bool
	code    int    // close code of kFail
	errType string // error_type of kFail
	text    string // tool_call_id, user message, error message
	result  string // client_tool_result.result
	audio   []byte // the echo, in the output format
}

type cmdKind uint8

const (
	kSpeechStart cmdKind = iota // the caller started speaking (barge-in)
	kUtterance                  // the caller finished an utterance
	kPong
	kToolResult
	kUserMessage
	kFail // send an error event and close
)

// How the agent's audio goes out: chunks of these lengths in turn (100-500 ms,
// not multiples of a 20 ms phone frame), the first leadIn of a response at once,
// the rest at speedup times real time.
var chunkPattern = [...]time.Duration{230 * time.Millisecond, 410 * time.Millisecond, 130 * time.Millisecond,
	470 * time.Millisecond, 310 * time.Millisecond, 170 * time.Millisecond, 370 * time.Millisecond,
	110 * time.Millisecond, 290 * time.Millisecond, 450 * time.Millisecond}

const (
	leadIn  = 500 * time.Millisecond
	speedup = 2
)

// Fixed texts of the simulated agent.
const (
	textFarewell    = "Thank you for calling. Goodbye!"
	textToolFailed  = "Sorry, that did not work."
	textToolDone    = "Done."
	textToolTimeout = "Sorry, that is taking too long."
	reasonEndCall   = "end_call tool was called."
)

// action is what the agent does once a response's audio is all sent.
type action uint8

const (
	thenNothing      action = iota
	thenClose               // close 1000 (end_call, tool response already sent)
	thenToolResponse        // agent_tool_response(end_call), then close 1000
)

// speech is a response being sent.
type speech struct {
	id    int64 // its event_id: every chunk, its agent_response and the turn's user_transcript carry it
	text  string
	audio []byte // output format; may be shared, never modified
	off   int    // bytes sent
	start time.Time
	then  action
}

type pingSent struct {
	id int64
	at time.Time
}

// pendingTool is a client tool call waiting for its client_tool_result.
type pendingTool struct {
	id, name string
	turn     int64
}

// agent is the simulated agent of one conversation: it owns the conversation's
// state and writes every data frame. It runs on its own goroutine (run).
//
// Event ids follow the docs' "per response" rule: one id per turn, shared by the
// caller's user_transcript, the reply's audio chunks and its agent_response,
// and any tool call made in it. Pings count on their own.
type agent struct {
	c   *wsConn
	set *settings
	buf []byte // the frame being built, reused

	turnID   int64 // the last turn's event_id
	reserved int64 // ReuseID: the id an interruption took, for the reply that follows
	pingID   int64
	chunk    int // next index into chunkPattern

	cur  *speech  // the response being sent, if any
	play struct { // the last response as the caller hears it
		on   bool
		id   int64
		wall time.Time     // its first audio went out
		pos  time.Duration // the caller's audio clock then
		dur  time.Duration
		text string
		turn int // transcript index
	}

	pings  [4]pingSent
	npings int
	rtt    *int64 // milliseconds

	tool         *pendingTool
	ending, done bool

	pace, toolT, recv, maxDur *time.Timer
}

func newAgent(c *wsConn) *agent {
	stopped := func() *time.Timer {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	return &agent{c: c, set: &c.set, buf: make([]byte, 0, 4<<10),
		pace: stopped(), toolT: stopped(), recv: stopped(), maxDur: stopped()}
}

func (a *agent) run() {
	c := a.c
	defer close(c.loopDone)
	defer func() {
		a.pace.Stop()
		a.toolT.Stop()
		a.recv.Stop()
		a.maxDur.Stop()
	}()
	if !a.start() {
		return
	}
	var ping <-chan time.Time
	if d := c.s.opts.PingInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		ping = t.C
	}
	a.recv.Reset(c.s.opts.ReceiveTimeout)
	if a.set.maxDuration > 0 {
		a.maxDur.Reset(a.set.maxDuration - time.Since(c.start))
	}
	a.pump()
	for !a.done {
		select {
		case m := <-c.cmds:
			a.handle(m)
		case r := <-c.initc: // a refused initiation that came after the wait
			if r.fail != nil {
				a.fail(*r.fail)
			}
		case <-a.pace.C:
		case <-ping:
			a.ping()
		case <-a.toolT.C:
			// response_timeout_secs passed without a client_tool_result: the LLM
			// is told the tool failed and carries on.
			if a.tool != nil {
				a.tool = nil
				a.respond("", textToolTimeout, voice(a.set.out, textToolTimeout), thenNothing)
			}
		case <-a.recv.C:
			timeout := c.s.opts.ReceiveTimeout
			if idle := time.Since(time.Unix(0, c.lastRecv.Load())); idle < timeout {
				a.recv.Reset(timeout - idle)
				break
			}
			a.fail(cmd{code: websocket.CloseProtocolError, errType: "transport_receive_timeout",
				text: fmt.Sprintf("No user input for %d seconds", int(timeout.Seconds()))})
		case <-a.maxDur.C:
			a.fail(cmd{code: websocket.CloseNormalClosure, errType: "max_duration_exceeded", text: "Maximum duration exceeded"})
		case <-c.readDone:
			return
		case <-c.stop:
			return
		}
		a.pump()
	}
}

// start waits for the initiation (briefly) and for the connect delay, then sends
// conversation_initiation_metadata and begins the opening line.
func (a *agent) start() bool {
	c := a.c
	var res initResult
	wait := time.NewTimer(initWait)
	defer wait.Stop()
	var delay <-chan time.Time
	if d := time.Duration(c.s.connectDelay.Load()) - time.Since(c.start); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		delay = t.C
	}
	waiting := true
	for waiting || delay != nil {
		select {
		case res = <-c.initc:
			waiting = false
			if res.fail != nil {
				a.fail(*res.fail)
				return false
			}
		case <-wait.C:
			waiting = false
		case <-delay:
			delay = nil
		case <-c.readDone:
			return false
		case <-c.stop:
			return false
		}
	}
	if a.set.badFormat != "" {
		a.fail(cmd{code: websocket.ClosePolicyViolation, errType: "value_error",
			text: fmt.Sprintf("Unsupported audio format %q", a.set.badFormat)})
		return false
	}
	a.event("conversation_initiation_metadata", "conversation_initiation_metadata_event", map[string]any{
		"conversation_id": c.conv.ID, "agent_output_audio_format": a.set.out.Name, "user_input_audio_format": a.set.in.Name})
	first := a.set.firstMessage
	var vars map[string]any
	c.s.mu.Lock()
	c.conv.Status = "in-progress"
	if in := res.in; in != nil {
		if in.FirstMessage != nil {
			first = *in.FirstMessage // "" means the agent waits for the caller
		}
		vars = in.DynamicVariables
	}
	c.s.mu.Unlock()
	if first = substitute(first, vars); first != "" {
		a.respond("", first, voice(a.set.out, first), thenNothing)
	}
	return !a.done
}

func (a *agent) handle(m cmd) {
	switch m.kind {
	case kSpeechStart:
		if a.playing(m.at, m.pos) {
			a.interrupt(m.at, m.pos)
		}
	case kUtterance:
		a.c.s.mu.Lock()
		a.c.conv.Utterances++
		a.c.s.mu.Unlock()
		if a.ending {
			return
		}
		secs := m.dur.Seconds()
		a.respond(fmt.Sprintf("(caller spoke %.1f s)", secs), fmt.Sprintf("I heard you for %.1f seconds.", secs), m.audio, thenNothing)
	case kUserMessage:
		if a.ending {
			return
		}
		if a.hookTurn(m.text) {
			return
		}
		reply := "You wrote: " + m.text
		a.respond("\x00"+m.text, reply, voice(a.set.out, reply), thenNothing)
	case kToolResult:
		if a.tool == nil || m.text != a.tool.id {
			return // late, or not ours: recorded by the reader, nothing more
		}
		a.tool = nil
		a.toolT.Stop()
		if a.ending {
			return
		}
		if m.isError {
			a.respond("", textToolFailed, voice(a.set.out, textToolFailed), thenNothing)
			return
		}
		a.respond("", textToolDone, voice(a.set.out, textToolDone), thenNothing)
	case kPong:
		for _, p := range a.pings {
			if p.id == m.n && p.id != 0 {
				ms := m.at.Sub(p.at).Milliseconds()
				a.rtt = &ms
				a.c.s.mu.Lock()
				a.c.conv.PingRTTMillis = &ms
				a.c.s.mu.Unlock()
				break
			}
		}
	case kFail:
		a.fail(m)
	}
}

// hookTurn runs what an enabled test hook makes of a user turn; true if one did.
func (a *agent) hookTurn(text string) bool {
	keys := keypad(text)
	switch {
	case keys == "#" && a.c.s.HookOn(HookHashEndsCall):
		a.record("user", text)
		a.endCall()
		return true
	case len(keys) > 0 && keys[0] == '0' && a.c.s.HookOn(HookZeroCallsTool) && len(a.set.tools) > 0:
		a.record("user", text)
		pick := 0
		if len(keys) > 1 && keys[1] >= '1' && keys[1] <= '9' {
			pick = int(keys[1] - '1')
		}
		a.callTool(a.set.tools[0], pick, "the caller pressed "+keys)
		return true
	}
	return false
}

// endCall runs the end_call system tool inside the service (System tools docs:
// the client sees at most agent_tool_response): the farewell, the tool response
// and close 1000, in the order Options.EndCallOrder says. An agent without the
// tool in built_in_tools cannot end the call.
func (a *agent) endCall() {
	if !a.set.endCall || a.ending {
		return
	}
	a.ending = true
	a.c.s.mu.Lock()
	a.c.conv.SystemTools = append(a.c.conv.SystemTools, "end_call")
	a.c.s.mu.Unlock()
	if a.c.s.opts.EndCallOrder == FarewellFirst {
		a.respond("", textFarewell, voice(a.set.out, textFarewell), thenToolResponse)
		return
	}
	a.respond("", textFarewell, voice(a.set.out, textFarewell), thenClose)
	if a.cur != nil {
		a.toolResponse("end_call", a.cur.id)
	}
}

// toolResponse is agent_tool_response for a system tool the agent ran.
func (a *agent) toolResponse(name string, id int64) {
	if a.set.events&evAgentToolResponse == 0 {
		return
	}
	a.event("agent_tool_response", "agent_tool_response", map[string]any{"tool_name": name,
		"tool_call_id": newID("toolu_"), "tool_type": "system", "is_error": false, "is_called": true, "event_id": id})
}

// callTool calls a client tool (type "client": the only tools a websocket client
// is sent, as client_tool_call) with parameters made from its schema: an enum
// parameter takes its value number pick (else its first), other strings reason.
// With expects_response the agent waits up to response_timeout_secs.
func (a *agent) callTool(t clientTool, pick int, reason string) {
	if a.tool != nil {
		return // one at a time
	}
	params := map[string]any{}
	props, _ := t.params["properties"].(map[string]any)
	for name, p := range props {
		pm, _ := p.(map[string]any)
		switch pm["type"] {
		case "string":
			if e := asList(pm["enum"]); len(e) > 0 {
				params[name] = e[min(pick, len(e)-1)]
				continue
			}
			params[name] = reason
		case "boolean":
			params[name] = true
		case "integer", "number":
			params[name] = 1
		}
	}
	id := newID("toolu_")
	turn := a.turnID
	if a.set.events&evToolCall != 0 {
		a.event("client_tool_call", "client_tool_call", map[string]any{"tool_name": t.name, "tool_call_id": id, "parameters": params, "event_id": turn})
	}
	a.c.s.mu.Lock()
	a.c.conv.ToolCalls = append(a.c.conv.ToolCalls, ToolCall{ID: id, Name: t.name, Parameters: params})
	a.c.s.mu.Unlock()
	if t.expects {
		a.tool = &pendingTool{id: id, name: t.name, turn: turn}
		a.toolT.Reset(t.timeout)
	}
}

// then runs what follows a response.
func (a *agent) then(sp *speech) {
	switch sp.then {
	case thenToolResponse:
		a.toolResponse("end_call", sp.id)
		a.close(websocket.CloseNormalClosure, reasonEndCall)
	case thenClose:
		a.close(websocket.CloseNormalClosure, reasonEndCall)
	}
}

// pos is the caller's audio clock.
func (a *agent) pos() time.Duration { return time.Duration(a.c.audioPos.Load()) }

// playing: the last response's audio is still playing at the caller's end, by
// both the wall clock and the caller's audio clock (whichever says it is over, it
// is over; with a caller streaming in real time the two agree).
func (a *agent) playing(now time.Time, pos time.Duration) bool {
	p := &a.play
	return p.on && now.Sub(p.wall) < p.dur && pos-p.pos < p.dur
}

// nextTurn is the event_id of a new turn: the one an interruption reserved
// (ReuseID), else the next number.
func (a *agent) nextTurn() int64 {
	if a.reserved != 0 {
		a.turnID, a.reserved = a.reserved, 0
		return a.turnID
	}
	a.turnID++
	return a.turnID
}

// respond starts a turn: the caller's words (heard: a user_transcript unless
// empty; "\x00"+text records a typed turn without one), then the reply. One still
// playing is interrupted first; one that has played by the caller's audio clock
// but is not all sent yet (a caller sending faster than real time) is sent in
// full first.
func (a *agent) respond(heard, text string, audio []byte, then action) {
	now := time.Now()
	if a.playing(now, a.pos()) {
		a.interrupt(now, a.pos())
	}
	for sp := a.cur; sp != nil && !a.done; {
		a.chunkOut(sp, now)
		if sp.off == len(sp.audio) {
			a.cur = nil
			a.then(sp)
			break
		}
	}
	if a.done {
		return
	}
	id := a.nextTurn()
	switch {
	case heard == "":
	case heard[0] == 0:
		a.record("user", heard[1:])
	default:
		if a.set.events&evUserTranscript != 0 {
			a.event("user_transcript", "user_transcription_event", map[string]any{"user_transcript": heard, "event_id": id})
		}
		a.record("user", heard)
	}
	a.cur = &speech{id: id, text: text, audio: audio, start: now, then: then}
}

// interrupt stops the response playing: interruption, then
// agent_response_correction with what the caller heard. Its event_id follows
// Options.InterruptionIDs.
func (a *agent) interrupt(now time.Time, pos time.Duration) {
	sp := a.cur
	a.cur = nil
	if p := &a.play; p.on {
		p.on = false
		heard := max(now.Sub(p.wall), pos-p.pos)
		heard = min(max(heard, 0), p.dur)
		corrected := truncate(p.text, float64(heard)/float64(p.dur))
		id := p.id
		if a.c.s.opts.InterruptionIDs == ReuseID {
			a.turnID++
			id, a.reserved = a.turnID, a.turnID
		}
		if a.set.events&evInterruption != 0 {
			a.event("interruption", "interruption_event", map[string]any{"event_id": id})
		}
		if a.set.events&evCorrection != 0 {
			a.event("agent_response_correction", "agent_response_correction_event", map[string]any{
				"original_agent_response": p.text, "corrected_agent_response": corrected, "event_id": p.id})
		}
		a.c.s.mu.Lock()
		if t := a.c.conv.Transcript; p.turn < len(t) {
			orig := t[p.turn].Message
			t[p.turn].Message, t[p.turn].Interrupted, t[p.turn].OriginalMessage = corrected, true, &orig
		}
		a.c.conv.Interruptions++
		a.c.s.mu.Unlock()
	}
	if sp != nil {
		a.then(sp)
	}
}

// pump sends the current response's chunks that are due and arms the pacer for
// the next.
func (a *agent) pump() {
	for a.cur != nil && !a.done {
		sp := a.cur
		now := time.Now()
		if lead := a.set.out.Duration(sp.off) - leadIn; lead > 0 {
			if due := sp.start.Add(lead / speedup); now.Before(due) {
				a.pace.Reset(due.Sub(now))
				return
			}
		}
		a.chunkOut(sp, now)
		if sp.off == len(sp.audio) {
			a.cur = nil
			a.then(sp)
		}
	}
}

// chunkOut sends the next chunk of sp; with its first, the agent_response.
func (a *agent) chunkOut(sp *speech, now time.Time) {
	out := a.set.out
	n := out.Samples(chunkPattern[a.chunk%len(chunkPattern)]) * out.BytesPerSample()
	a.chunk++
	n = min(n, len(sp.audio)-sp.off)
	first := sp.off == 0
	if a.set.events&evAudio != 0 {
		b := append(a.buf[:0], `{"type":"audio","audio_event":{"audio_base_64":"`...)
		b = base64.StdEncoding.AppendEncode(b, sp.audio[sp.off:sp.off+n])
		b = append(b, `","event_id":`...)
		b = strconv.AppendInt(b, sp.id, 10)
		a.buf = append(b, "}}"...)
		a.write(a.buf)
	}
	sp.off += n
	if !first {
		return
	}
	p := &a.play
	p.on, p.id, p.wall, p.pos, p.dur, p.text = true, sp.id, now, a.pos(), out.Duration(len(sp.audio)), sp.text
	p.turn = a.record("agent", sp.text)
	if a.set.events&evAgentResponse != 0 {
		a.event("agent_response", "agent_response_event", map[string]any{"agent_response": sp.text, "event_id": sp.id})
	}
}

func (a *agent) ping() {
	if a.set.events&evPing == 0 {
		return
	}
	a.pingID++
	a.pings[a.npings%len(a.pings)] = pingSent{id: a.pingID, at: time.Now()}
	a.npings++
	b := append(a.buf[:0], `{"type":"ping","ping_event":{"event_id":`...)
	b = strconv.AppendInt(b, a.pingID, 10)
	b = append(b, `,"ping_ms":`...)
	if a.rtt == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, *a.rtt, 10)
	}
	a.buf = append(b, "}}"...)
	a.write(a.buf)
}

// record appends a transcript turn and returns its index.
func (a *agent) record(role, text string) int {
	c := a.c
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.conv.Transcript = append(c.conv.Transcript, TranscriptTurn{Role: role, Message: text, Time: time.Since(c.start).Seconds()})
	return len(c.conv.Transcript) - 1
}

func (a *agent) event(typ, key string, payload map[string]any) {
	b, err := json.Marshal(map[string]any{"type": typ, key: payload})
	if err != nil {
		panic(err) // only strings, numbers and maps of them
	}
	a.write(b)
}

func (a *agent) write(b []byte) {
	if a.done {
		return
	}
	ws := a.c.ws
	_ = ws.SetWriteDeadline(time.Now().Add(writeWait))
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		a.done = true
		ws.Close() // unblocks the reader
		return
	}
	if f := a.c.s.opts.Observe; f != nil {
		f(FromServer, b)
	}
}

// fail sends an error event (ErrorPayload) and closes with its code.
func (a *agent) fail(m cmd) {
	a.event("error", "error_event", map[string]any{"code": m.code, "message": m.text, "error_type": m.errType,
		"reason": m.text, "debug_message": nil, "details": nil})
	a.close(m.code, m.text)
}

// close sends a close frame and stops the agent; the reader then gets the
// client's close frame, or gives up after closeWait.
func (a *agent) close(code int, reason string) {
	c := a.c
	c.setReason(reason)
	if !a.done && !c.closeSent.Swap(true) {
		if len(reason) > 120 {
			reason = reason[:120]
		}
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeWait))
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(closeWait))
	a.done = true
}
