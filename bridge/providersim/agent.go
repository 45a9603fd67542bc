package providersim

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
	digit   byte
	isError bool
	code    int    // close code of kFail
	errType string // error_type of kFail
	text    string // tool_call_id, user message, error message
	audio   []byte // the echo, in the output format
}

type cmdKind uint8

const (
	kSpeechStart cmdKind = iota // the caller started speaking (barge-in)
	kUtterance                  // the caller finished an utterance
	kPong
	kToolResult
	kDigit
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

// Fixed texts of the agent.
const (
	textGoodbye        = "Thank you for calling. Goodbye!"
	textTransferFailed = "Sorry, I could not transfer you."
	textNoTransfer     = "Sorry, I cannot transfer calls."
	reasonEndCall      = "end_call tool was called."
)

// action is what the agent does once a response's audio is all sent.
type action uint8

const (
	thenNothing action = iota
	thenEndCall
)

// speech is a response being sent.
type speech struct {
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

// agent is the simulated agent of one conversation: it owns the conversation's
// state and writes every data frame. It runs on its own goroutine (run).
type agent struct {
	c   *wsConn
	set *settings
	buf []byte // the frame being built, reused

	eventID   int64 // the last event_id given out
	lastAudio int64 // event_id of the last audio sent
	chunk     int   // next index into chunkPattern

	cur  *speech  // the response being sent, if any
	play struct { // the last response as the caller hears it
		on   bool
		wall time.Time     // its first audio went out
		pos  time.Duration // the caller's audio clock then
		dur  time.Duration
		text string
		turn int // transcript index
	}

	pings  [4]pingSent
	npings int
	rtt    *int64 // milliseconds

	endCallID, transferID string
	ending, quiet, done   bool

	pace, tool, recv, maxDur *time.Timer
}

func newAgent(c *wsConn) *agent {
	stopped := func() *time.Timer {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	return &agent{c: c, set: &c.set, buf: make([]byte, 0, 4<<10),
		pace: stopped(), tool: stopped(), recv: stopped(), maxDur: stopped()}
}

func (a *agent) run() {
	c := a.c
	defer close(c.loopDone)
	defer func() {
		a.pace.Stop()
		a.tool.Stop()
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
		case <-a.tool.C:
			a.close(websocket.CloseNormalClosure, reasonEndCall)
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
		"conversation_id": c.conv.ID, "agent_output_audio_format": a.set.out.name, "user_input_audio_format": a.set.in.name})
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
		a.say(first, voice(a.set.out, first), thenNothing)
	}
	return !a.done
}

func (a *agent) handle(m cmd) {
	switch m.kind {
	case kSpeechStart:
		if !a.quiet && a.playing(m.at, m.pos) {
			a.interrupt(m.at, m.pos)
		}
	case kUtterance:
		a.c.s.mu.Lock()
		a.c.conv.Utterances++
		a.c.s.mu.Unlock()
		if a.quiet || a.ending {
			return
		}
		secs := m.dur.Seconds()
		heard := fmt.Sprintf("(caller spoke %.1f s)", secs)
		if a.set.events&evUserTranscript != 0 {
			a.eventID++
			a.event("user_transcript", "user_transcription_event", map[string]any{"user_transcript": heard, "event_id": a.eventID})
		}
		a.record("user", heard)
		a.say(fmt.Sprintf("I heard you for %.1f seconds.", secs), m.audio, thenNothing)
	case kUserMessage:
		if a.quiet || a.ending {
			return
		}
		a.record("user", m.text)
		reply := "You wrote: " + m.text
		a.say(reply, voice(a.set.out, reply), thenNothing)
	case kDigit:
		a.digit(m.digit)
	case kToolResult:
		switch m.text {
		case "":
		case a.endCallID:
			a.close(websocket.CloseNormalClosure, reasonEndCall)
		case a.transferID:
			a.transferID = ""
			if m.isError {
				a.say(textTransferFailed, voice(a.set.out, textTransferFailed), thenNothing)
				return
			}
			a.quiet = true // the caller is someone else's now
			a.c.s.mu.Lock()
			a.c.conv.Transferred = a.set.transferTo
			a.c.s.mu.Unlock()
			a.c.setReason("The call was transferred.")
		}
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

// digit is a keypad digit the gateway reported.
func (a *agent) digit(d byte) {
	if a.quiet || a.ending {
		return
	}
	switch d {
	case '#':
		a.ending = true
		a.say(textGoodbye, voice(a.set.out, textGoodbye), thenEndCall)
	case '0':
		if a.transferID != "" {
			return // one at a time
		}
		if a.set.transferTo == "" || a.set.events&evToolCall == 0 {
			a.say(textNoTransfer, voice(a.set.out, textNoTransfer), thenNothing)
			return
		}
		a.transferID = a.toolCall("transfer_to_number", map[string]any{"transfer_number": a.set.transferTo, "reason": "caller pressed 0"})
	default:
		text := fmt.Sprintf("You pressed %c.", d)
		a.say(text, voice(a.set.out, text), thenNothing)
	}
}

// toolCall sends a client_tool_call and returns its tool_call_id.
func (a *agent) toolCall(name string, params map[string]any) string {
	id := newID("tool_call_")
	a.eventID++
	a.event("client_tool_call", "client_tool_call", map[string]any{"tool_name": name, "tool_call_id": id, "parameters": params, "event_id": a.eventID})
	a.c.s.mu.Lock()
	a.c.conv.ToolCalls = append(a.c.conv.ToolCalls, ToolCall{ID: id, Name: name, Parameters: params})
	a.c.s.mu.Unlock()
	return id
}

// then runs what follows a response.
func (a *agent) then(act action) {
	if act != thenEndCall {
		return
	}
	if a.set.events&evToolCall == 0 {
		// Without client tool calls the real service runs end_call itself and closes.
		a.close(websocket.CloseNormalClosure, reasonEndCall)
		return
	}
	a.endCallID = a.toolCall("end_call", map[string]any{"reason": "caller pressed #"})
	a.tool.Reset(a.c.s.opts.ToolTimeout)
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

// say starts a response. One still playing is interrupted first; one that has
// played by the caller's audio clock but is not all sent yet (a caller sending
// faster than real time) is sent in full first.
func (a *agent) say(text string, audio []byte, then action) {
	now := time.Now()
	if a.playing(now, a.pos()) {
		a.interrupt(now, a.pos())
	}
	for sp := a.cur; sp != nil && !a.done; {
		a.chunkOut(sp, now)
		if sp.off == len(sp.audio) {
			a.cur = nil
			a.then(sp.then)
			break
		}
	}
	a.cur = &speech{text: text, audio: audio, start: now, then: then}
}

// interrupt stops the response playing: interruption with the event_id of the
// last audio sent, then agent_response_correction with what the caller heard.
func (a *agent) interrupt(now time.Time, pos time.Duration) {
	sp := a.cur
	a.cur = nil
	if p := &a.play; p.on {
		p.on = false
		heard := max(now.Sub(p.wall), pos-p.pos)
		heard = min(max(heard, 0), p.dur)
		corrected := truncate(p.text, float64(heard)/float64(p.dur))
		if a.set.events&evInterruption != 0 {
			a.event("interruption", "interruption_event", map[string]any{"event_id": a.lastAudio})
		}
		if a.set.events&evCorrection != 0 {
			a.eventID++
			a.event("agent_response_correction", "agent_response_correction_event", map[string]any{
				"original_agent_response": p.text, "corrected_agent_response": corrected, "event_id": a.eventID})
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
		a.then(sp.then)
	}
}

// pump sends the current response's chunks that are due and arms the pacer for
// the next.
func (a *agent) pump() {
	for a.cur != nil && !a.done {
		sp := a.cur
		now := time.Now()
		if lead := a.set.out.duration(sp.off) - leadIn; lead > 0 {
			if due := sp.start.Add(lead / speedup); now.Before(due) {
				a.pace.Reset(due.Sub(now))
				return
			}
		}
		a.chunkOut(sp, now)
		if sp.off == len(sp.audio) {
			a.cur = nil
			a.then(sp.then)
		}
	}
}

// chunkOut sends the next chunk of sp; with its first, the agent_response.
func (a *agent) chunkOut(sp *speech, now time.Time) {
	out := a.set.out
	n := out.samples(chunkPattern[a.chunk%len(chunkPattern)]) * out.bytesPerSample()
	a.chunk++
	n = min(n, len(sp.audio)-sp.off)
	first := sp.off == 0
	if a.set.events&evAudio != 0 {
		a.eventID++
		a.lastAudio = a.eventID
		b := append(a.buf[:0], `{"type":"audio","audio_event":{"audio_base_64":"`...)
		b = base64.StdEncoding.AppendEncode(b, sp.audio[sp.off:sp.off+n])
		b = append(b, `","event_id":`...)
		b = strconv.AppendInt(b, a.eventID, 10)
		a.buf = append(b, "}}"...)
		a.write(a.buf)
	}
	sp.off += n
	if !first {
		return
	}
	p := &a.play
	p.on, p.wall, p.pos, p.dur, p.text = true, now, a.pos(), out.duration(len(sp.audio)), sp.text
	p.turn = a.record("agent", sp.text)
	if a.set.events&evAgentResponse != 0 {
		a.eventID++
		a.event("agent_response", "agent_response_event", map[string]any{"agent_response": sp.text, "event_id": a.eventID})
	}
}

func (a *agent) ping() {
	if a.set.events&evPing == 0 {
		return
	}
	a.eventID++
	a.pings[a.npings%len(a.pings)] = pingSent{id: a.eventID, at: time.Now()}
	a.npings++
	b := append(a.buf[:0], `{"type":"ping","ping_event":{"event_id":`...)
	b = strconv.AppendInt(b, a.eventID, 10)
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
	}
}

// fail sends an error event and closes with its code.
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
