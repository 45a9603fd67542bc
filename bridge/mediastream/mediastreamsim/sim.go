// Package mediastreamsim is a reference bot for the Media Streams format: a
// websocket server that answers calls as a customer's bot would, so tests,
// development and load tests run the gateway's real mediastream provider over
// a real websocket. It runs in-process (New, an http.Handler at /bot) or inside
// `cxco providersim`.
//
// It is written from Twilio's "Media Streams - WebSocket Messages" reference
// (the messages Twilio sends a bidirectional stream's server: connected, start,
// media, dtmf, mark, stop; and what the server sends back: media, mark, clear)
// and the gateway's documented additions (transcript, tool_call, tool_result,
// README "Your own bot"), never from our provider (it does not import it).
//
// The bot, like the other simulators, speaks a 440 Hz tone of 60 ms per
// character (package simaudio):
//
//  1. After start it says start.customParameters.cxco_opening_line (if any)
//     as media messages of 20 ms, then a mark named "opening"; a transcript
//     message {role agent} goes with it. cxco_resumed "true" means a dropped
//     stream came back: it does not greet again.
//  2. It detects the caller's utterances in the inbound media (energy, on the
//     audio's clock, simaudio's detector). An utterance that starts while its
//     own audio plays (media sent whose mark has not come back) is barge-in: it
//     sends clear, and stops what it was saying. At the end of an utterance it
//     sends transcript {role user, "(caller spoke 1.4 s)"}, the utterance back
//     as media, a mark, and transcript {role agent, "I heard you for 1.4
//     seconds."}.
//  3. dtmf digits are collected. Test hooks (Options.Hooks): with
//     "keypad_hash_ends_call", # gets a farewell, and once its mark is back, a
//     tool_call end_call; with "keypad_zero_calls_transfer", 0 gets "Transferring
//     you." and, once played, a tool_call transfer_call to the first of
//     cxco_transfer_destinations.
//  4. stop ends the stream; it closes the socket.
//
// Faults and inspection: SetRefuse (503 before the upgrade), SetConnectDelay,
// DropStreams, Streams. Options.Observe sees every message either side sends.
package mediastreamsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge/internal/simaudio"
)

// Test hooks.
const (
	HookHashEndsCall      = "keypad_hash_ends_call"
	HookZeroCallsTransfer = "keypad_zero_calls_transfer"
)

// Hooks lists every test hook.
var Hooks = []string{HookHashEndsCall, HookZeroCallsTransfer}

// Direction says who sent a message Options.Observe sees.
type Direction uint8

// Directions.
const (
	FromGateway Direction = iota + 1
	FromBot
)

// Options configure the bot.
type Options struct {
	Hooks []string
	// Headers the gateway must send (e.g. Authorization); others are 401.
	Headers map[string]string
	Observe func(Direction, []byte)
	Logger  *slog.Logger
}

// Server is the bot.
type Server struct {
	opts   Options
	refuse atomic.Bool
	delay  atomic.Int64

	mu      sync.Mutex
	live    map[*stream]struct{}
	streams []*Stream
	wg      sync.WaitGroup
}

// Stream is what a test can inspect of one stream.
type Stream struct {
	StreamSid, CallSid string
	Parameters         map[string]string
	MediaIn            int      // media messages received
	Digits             string   // dtmf received
	Marks              []string // mark names the gateway sent back
	Clears             int
	Utterances         int
	ToolCalls          []string // names
	ToolResults        []ToolResult
	Stopped            bool // stop received
	Errors             []string
}

// ToolResult is a tool_result the gateway sent.
type ToolResult struct {
	ID, Result string
	IsError    bool
}

// New makes a bot.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: o, live: map[*stream]struct{}{}}
}

// SetRefuse makes new streams fail with 503 before the upgrade.
func (s *Server) SetRefuse(on bool) { s.refuse.Store(on) }

// SetConnectDelay holds new connections this long before the upgrade.
func (s *Server) SetConnectDelay(d time.Duration) { s.delay.Store(int64(d)) }

// DropStreams closes every live socket without a close frame.
func (s *Server) DropStreams() int {
	s.mu.Lock()
	var list []*stream
	for st := range s.live {
		list = append(list, st)
	}
	s.mu.Unlock()
	for _, st := range list {
		_ = st.ws.NetConn().Close()
	}
	return len(list)
}

// Streams is a copy of every stream so far.
func (s *Server) Streams() []Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Stream, len(s.streams))
	for i, r := range s.streams {
		out[i] = *r
		out[i].Marks = slices.Clone(r.Marks)
		out[i].ToolCalls = slices.Clone(r.ToolCalls)
		out[i].ToolResults = slices.Clone(r.ToolResults)
		out[i].Errors = slices.Clone(r.Errors)
	}
	return out
}

// Close drops every stream and waits for them.
func (s *Server) Close() error {
	s.DropStreams()
	s.wg.Wait()
	return nil
}

func (s *Server) hook(name string) bool { return slices.Contains(s.opts.Hooks, name) }

// ServeHTTP implements http.Handler: the bot's websocket at /bot.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/bot" {
		http.NotFound(w, r)
		return
	}
	for k, v := range s.opts.Headers {
		if r.Header.Get(k) != v {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	if d := time.Duration(s.delay.Load()); d > 0 {
		time.Sleep(d) // a slow bot; SetConnectDelay is a test's fault injection
	}
	if s.refuse.Load() {
		http.Error(w, "bot unavailable", http.StatusServiceUnavailable)
		return
	}
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	st := &stream{s: s, ws: ws, rec: &Stream{}, pending: map[string]func(){}}
	s.mu.Lock()
	s.live[st] = struct{}{}
	s.streams = append(s.streams, st.rec)
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.live, st)
		s.mu.Unlock()
		s.wg.Done()
	}()
	st.run()
}

// stream is one call's stream; one goroutine reads and handles, and paces
// its own audio with a timer.
type stream struct {
	s   *Server
	ws  *websocket.Conn
	rec *Stream
	sid string
	wmu sync.Mutex // writes: the handler and the audio timer

	mu      sync.Mutex
	queue   []qItem // audio and marks still to send, in order
	pace    *time.Timer
	marks   int
	pending map[string]func() // what to do when a mark comes back
	det     *simaudio.Detector
	pcm     []int16
	digits  string
	closed  bool
}

func (st *stream) record(f func(*Stream)) {
	st.s.mu.Lock()
	f(st.rec)
	st.s.mu.Unlock()
}

func (st *stream) send(v map[string]any) {
	if st.sid != "" {
		v["streamSid"] = st.sid
	}
	b, _ := json.Marshal(v)
	if st.s.opts.Observe != nil {
		st.s.opts.Observe(FromBot, b)
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	_ = st.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = st.ws.WriteMessage(websocket.TextMessage, b)
}

func (st *stream) run() {
	defer st.ws.Close()
	defer func() {
		st.mu.Lock()
		st.closed = true
		if st.pace != nil {
			st.pace.Stop()
		}
		st.mu.Unlock()
	}()
	st.det = simaudio.NewDetector(8000, st.onSpeech, st.onUtterance)
	for {
		_, msg, err := st.ws.ReadMessage()
		if err != nil {
			return
		}
		if st.s.opts.Observe != nil {
			st.s.opts.Observe(FromGateway, msg)
		}
		var m struct {
			Event string `json:"event"`
			Start *struct {
				StreamSid        string            `json:"streamSid"`
				CallSid          string            `json:"callSid"`
				CustomParameters map[string]string `json:"customParameters"`
			} `json:"start"`
			Media *struct {
				Payload string `json:"payload"`
			} `json:"media"`
			DTMF *struct {
				Digit string `json:"digit"`
			} `json:"dtmf"`
			Mark *struct {
				Name string `json:"name"`
			} `json:"mark"`
			ToolResult *ToolResult `json:"toolResult"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			st.record(func(r *Stream) { r.Errors = append(r.Errors, "bad JSON") })
			continue
		}
		switch m.Event {
		case "connected":
		case "start":
			if m.Start == nil {
				continue
			}
			st.sid = m.Start.StreamSid
			st.record(func(r *Stream) {
				r.StreamSid, r.CallSid, r.Parameters = m.Start.StreamSid, m.Start.CallSid, m.Start.CustomParameters
			})
			if line := m.Start.CustomParameters["cxco_opening_line"]; line != "" && m.Start.CustomParameters["cxco_resumed"] != "true" {
				st.say(line, simaudio.Voice(simaudio.ULaw8000, line), "opening", nil)
			}
		case "media":
			if m.Media == nil {
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(m.Media.Payload)
			if err != nil {
				continue
			}
			st.record(func(r *Stream) { r.MediaIn++ })
			st.pcm = simaudio.ULaw8000.Decode(st.pcm, raw)
			st.det.Feed(st.pcm)
		case "dtmf":
			if m.DTMF != nil {
				st.onDigit(m.DTMF.Digit)
			}
		case "mark":
			if m.Mark != nil {
				st.onMark(m.Mark.Name)
			}
		case "tool_result":
			if m.ToolResult != nil {
				tr := *m.ToolResult
				st.record(func(r *Stream) { r.ToolResults = append(r.ToolResults, tr) })
			}
		case "stop":
			st.record(func(r *Stream) { r.Stopped = true })
			return
		}
	}
}

// say queues audio (µ-law) with a transcript and a mark; then runs when the
// mark comes back.
func (st *stream) say(text string, audio []byte, mark string, then func()) {
	st.mu.Lock()
	st.marks++
	name := fmt.Sprintf("%s-%d", mark, st.marks)
	st.pending[name] = then
	st.mu.Unlock()
	st.send(map[string]any{"event": "transcript", "transcript": map[string]any{"role": "agent", "text": text}})
	st.mu.Lock()
	for len(audio) > 0 {
		n := min(160, len(audio))
		st.queue = append(st.queue, qItem{audio: audio[:n]})
		audio = audio[n:]
	}
	st.queue = append(st.queue, qItem{mark: name})
	start := st.pace == nil
	st.mu.Unlock()
	if start {
		st.pump()
	}
}

// qItem is 20 ms of audio to send, or a mark.
type qItem struct {
	audio []byte
	mark  string
}

// pump sends the queued audio in 20 ms media messages, the first 0.5 s at
// once and then in real time, with each mark in its place.
func (st *stream) pump() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	sent := 0
	for len(st.queue) > 0 && sent < 5 {
		it := st.queue[0]
		st.queue = st.queue[1:]
		st.mu.Unlock()
		if it.mark != "" {
			st.send(map[string]any{"event": "mark", "mark": map[string]any{"name": it.mark}})
		} else {
			st.send(map[string]any{"event": "media", "media": map[string]any{"payload": base64.StdEncoding.EncodeToString(it.audio)}})
			sent++
		}
		st.mu.Lock()
	}
	if len(st.queue) == 0 || st.closed {
		st.pace = nil
		return
	}
	if st.pace == nil {
		st.pace = time.AfterFunc(100*time.Millisecond, st.pump)
	} else {
		st.pace.Reset(100 * time.Millisecond)
	}
}

// playing: audio was sent whose mark has not come back.
func (st *stream) playing() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.pending) > 0 || len(st.queue) > 0
}

func (st *stream) onSpeech(int64) {
	st.record(func(r *Stream) { r.Utterances++ })
	if !st.playing() {
		return
	}
	// Barge-in: stop talking, and ask the gateway to drop what it has queued.
	st.mu.Lock()
	st.queue = nil
	st.mu.Unlock()
	st.record(func(r *Stream) { r.Clears++ })
	st.send(map[string]any{"event": "clear"})
}

func (st *stream) onUtterance(n int64, pcm []int16) {
	secs := math.Round(float64(n)/8000*10) / 10
	st.send(map[string]any{"event": "transcript", "transcript": map[string]any{"role": "user", "text": fmt.Sprintf("(caller spoke %.1f s)", secs)}})
	st.say(fmt.Sprintf("I heard you for %.1f seconds.", secs), simaudio.ULaw8000.Encode(pcm), "echo", nil)
}

func (st *stream) onMark(name string) {
	st.mu.Lock()
	then, ok := st.pending[name]
	delete(st.pending, name)
	st.mu.Unlock()
	st.record(func(r *Stream) { r.Marks = append(r.Marks, name) })
	if ok && then != nil {
		then()
	}
}

func (st *stream) onDigit(d string) {
	st.record(func(r *Stream) { r.Digits += d })
	switch {
	case d == "#" && st.s.hook(HookHashEndsCall):
		text := "Goodbye, thank you for calling."
		st.say(text, simaudio.Voice(simaudio.ULaw8000, text), "farewell", func() { st.toolCall("end_call", map[string]any{}) })
	case d == "0" && st.s.hook(HookZeroCallsTransfer):
		var dests []struct {
			Number string `json:"number"`
		}
		st.s.mu.Lock()
		raw := st.rec.Parameters["cxco_transfer_destinations"]
		st.s.mu.Unlock()
		_ = json.Unmarshal([]byte(raw), &dests)
		if len(dests) == 0 {
			return
		}
		text := "Transferring you."
		st.say(text, simaudio.Voice(simaudio.ULaw8000, text), "transfer", func() {
			st.toolCall("transfer_call", map[string]any{"destination": dests[0].Number, "reason": "the caller pressed 0"})
		})
	}
}

var toolIDs atomic.Int64

func (st *stream) toolCall(name string, args map[string]any) {
	st.record(func(r *Stream) { r.ToolCalls = append(r.ToolCalls, name) })
	st.send(map[string]any{"event": "tool_call", "toolCall": map[string]any{"id": fmt.Sprint(toolIDs.Add(1)), "name": name, "arguments": args}})
}
