package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/bridge/elevenlabs"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
)

// Session is one call's conversation with the voice-AI provider; it is the call's
// sip.Peer. Caller audio leaves as user_audio_chunk messages; the provider's audio
// is cut into frames and played through the call's pacer; transcripts go to the
// store as they happen.
//
// Goroutines: the reader (provider events; it also reconnects once when the socket
// drops), the writer (the only one to write the socket), the transcript recorder,
// after an end_call tool response a timer that hangs up if the provider never
// closes, and a transfer the agent asked for while it runs. Close stops them and
// waits for them.
type Session struct {
	c      *Connector
	info   *sip.CallInfo
	log    *slog.Logger
	format media.Format
	agent  string // the provider's agent id

	chunkBytes int
	rec        *recorder

	connMu  sync.Mutex
	conn    *websocket.Conn
	convIDs []string // the provider's conversation ids (more than one after a reconnect)

	// Caller audio to the provider: a ring of chunks, filled by OnAudio (media
	// goroutine, never blocks: the oldest chunk is dropped when full) and drained by
	// the writer. The ring starts small and doubles up to ringSlots only while the
	// provider socket is slow. ctrl carries everything else, ahead of audio.
	audioMu   sync.Mutex
	ring      [][]byte
	ringHead  int
	ringLen   int
	partial   []byte
	stamps    []chunkStamp // of each ring chunk
	partStamp chunkStamp
	audioDrop atomic.Int64
	wake      chan struct{}
	ctrl      chan []byte

	call      atomic.Pointer[callBox]
	pending   [][]byte // provider audio before the call was answered
	pendingMu sync.Mutex
	// Barge-in, owned by the reader: audio older than the last interruption's
	// event_id, or of the reply that was playing when it came, is stale. Event ids
	// are per response, and the reply after an interruption may carry the
	// interruption's own id, so that one plays.
	lastAudio, interruptID, cutID int64
	ending                        atomic.Bool
	endCallSeen                   atomic.Bool
	reconnects                    int

	// Keypad digits collected until # or a pause (OnDigit, a timer).
	keypad   store.KeypadConfig
	digitMu  sync.Mutex
	digits   []byte
	digitT   *time.Timer
	digitGen int

	done    chan struct{}
	end     sip.PeerEnd
	endOnce sync.Once
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
	tools   sync.WaitGroup // client tools under way (the transfer); Close waits for them

	upstream func(fromArrival, fromPlayout time.Duration) // Connector.OnUpstream
}

type callBox struct{ sip.Call }

const (
	ringSlots     = 64 // 1.28 s of 20 ms chunks before the oldest is dropped
	ringStart     = 4  // slots allocated at first: a writer that keeps up needs one or two
	writeDeadline = 3 * time.Second
)

var errNotStarted = errors.New("bridge: the call is not answered yet")

// Format implements sip.Peer.
func (s *Session) Format() media.Format { return s.format }

// Start implements sip.Peer: the call is answered; audio the provider sent while it
// rang (the opening line) plays now.
func (s *Session) Start(call sip.Call) error {
	s.call.Store(&callBox{call})
	s.pendingMu.Lock()
	pending := s.pending
	s.pending = nil
	s.pendingMu.Unlock()
	for _, a := range pending {
		if err := call.Play(a); err != nil {
			return err
		}
	}
	return nil
}

// OnAudio implements sip.Peer: a 20 ms frame of caller audio (media goroutine).
func (s *Session) OnAudio(f media.Frame) {
	if s.call.Load() == nil || s.ending.Load() {
		return // not answered yet, or the call is over and media just has not stopped
	}
	s.audioMu.Lock()
	s.partial = append(s.partial, f.Audio...) // in the session's format: µ-law, or 16 kHz PCM as little-endian bytes
	if f.Arrival.After(s.partStamp.arrival) {
		s.partStamp.arrival = f.Arrival
	}
	s.partStamp.due = f.Due
	full := len(s.partial) >= s.chunkBytes
	if full {
		s.pushChunkLocked()
	}
	s.audioMu.Unlock()
	if full {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// chunkStamp times an audio chunk: the arrival of its newest RTP packet and the
// playout time of its last frame (when the jitter buffer released it).
type chunkStamp struct{ arrival, due time.Time }

// pushChunkLocked moves the partial chunk into the ring (growing it up to ringSlots,
// then dropping the oldest when full).
func (s *Session) pushChunkLocked() {
	if s.ringLen == len(s.ring) && len(s.ring) < ringSlots {
		n := min(2*len(s.ring), ringSlots)
		ring, stamps := make([][]byte, n), make([]chunkStamp, n)
		for i := range s.ringLen {
			j := (s.ringHead + i) % len(s.ring)
			ring[i], stamps[i] = s.ring[j], s.stamps[j]
		}
		s.ring, s.stamps, s.ringHead = ring, stamps, 0
	}
	if s.ringLen == len(s.ring) {
		s.ringHead = (s.ringHead + 1) % len(s.ring)
		s.ringLen--
		s.audioDrop.Add(1)
	}
	i := (s.ringHead + s.ringLen) % len(s.ring)
	s.ring[i] = append(s.ring[i][:0], s.partial...)
	s.stamps[i] = s.partStamp
	s.ringLen++
	s.partial = s.partial[:0]
	s.partStamp = chunkStamp{}
}

// OnDigit implements sip.Peer: keypad digits are collected until # or a pause of
// config.keypad.inter_digit_timeout_ms, then go to the agent as one message:
// a user_message by default (a user turn, which the agent answers; a
// contextual_update is only background it never answers), as config.keypad.mode says.
func (s *Session) OnDigit(d media.Digit) {
	if s.keypad.Mode == store.KeypadOff {
		s.log.Info("DTMF from the caller ignored (keypad off)", "digit", string(d.Digit))
		return
	}
	s.digitMu.Lock()
	s.digits = append(s.digits, byte(d.Digit))
	s.digitGen++
	gen := s.digitGen
	if s.digitT != nil {
		s.digitT.Stop()
	}
	if d.Digit == '#' {
		s.digitMu.Unlock()
		s.flushDigits(gen)
		return
	}
	s.digitT = time.AfterFunc(time.Duration(s.keypad.InterDigitMS)*time.Millisecond, func() { s.flushDigits(gen) })
	s.digitMu.Unlock()
}

// flushDigits sends the digits collected so far (unless more came since gen).
func (s *Session) flushDigits(gen int) {
	s.digitMu.Lock()
	if gen != s.digitGen || len(s.digits) == 0 {
		s.digitMu.Unlock()
		return
	}
	entry := string(s.digits)
	s.digits = s.digits[:0]
	s.digitMu.Unlock()
	text := "The caller entered " + entry + " on the keypad."
	s.log.Info("keypad entry from the caller", "digits", len(entry), "mode", s.keypad.Mode)
	// The provider answers a user_message but does not transcribe it back: the
	// transcript gets the entry here.
	if s.keypad.Mode == store.KeypadContextualUpdate {
		s.rec.entry("system", text, s.since())
		s.send(contextualUpdate(text))
		return
	}
	s.rec.entry("user", text, s.since())
	s.send(userMessage(text))
}

// Done implements sip.Peer.
func (s *Session) Done() <-chan struct{} { return s.done }

// End implements sip.Peer.
func (s *Session) End() sip.PeerEnd { return s.end }

func (s *Session) finish(e sip.PeerEnd) {
	s.endOnce.Do(func() {
		s.end = e
		close(s.done)
	})
}

// send queues a control message for the writer (never blocks the caller for long).
func (s *Session) send(msg []byte) {
	select {
	case s.ctrl <- msg:
	case <-s.stop:
	case <-time.After(time.Second):
		s.log.Warn("provider control queue full; message dropped")
	}
}

// seconds since the call was answered (0 before), for transcript timestamps.
func (s *Session) since() float64 {
	cb := s.call.Load()
	if cb == nil {
		return 0
	}
	at := cb.AnsweredAt()
	if at.IsZero() {
		return 0
	}
	return math.Round(time.Since(at).Seconds()*10) / 10
}

// writer is the only goroutine that writes data frames on the socket: control
// messages first, then caller audio, each audio chunk its own message as soon as it
// is complete. Whatever is queued when it wakes (several chunks after a scheduling
// delay, a pong with a chunk) goes out in one write; a chunk never waits for another.
// Frames are built here, masked as a client's must be, without allocating.
func (s *Session) writer() {
	defer s.wg.Done()
	var (
		w      frameWriter
		stamps []chunkStamp // of the audio chunks in this write
		msg    []byte
	)
	for {
		select {
		case <-s.stop:
			return
		case m := <-s.ctrl:
			w.add(m)
		case <-s.wake:
		}
	drain:
		for {
			select {
			case m := <-s.ctrl:
				w.add(m)
			default:
				break drain
			}
		}
		s.audioMu.Lock()
		for s.ringLen > 0 {
			msg = appendAudioChunk(msg[:0], s.ring[s.ringHead])
			w.add(msg)
			stamps = append(stamps, s.stamps[s.ringHead])
			s.ringHead = (s.ringHead + 1) % len(s.ring)
			s.ringLen--
		}
		s.audioMu.Unlock()
		if w.frames == 0 {
			continue
		}
		if s.flush(&w) && s.upstream != nil {
			now := time.Now()
			for _, st := range stamps {
				if !st.arrival.IsZero() && !st.due.IsZero() {
					s.upstream(now.Sub(st.arrival), now.Sub(st.due))
				}
			}
		}
		w.reset()
		stamps = stamps[:0]
	}
}

// flush writes the frames on the current socket in one write; false if it failed
// (the reader notices the broken socket and reconnects).
func (s *Session) flush(w *frameWriter) bool {
	s.connMu.Lock()
	conn := s.conn
	s.connMu.Unlock()
	if conn == nil {
		return false
	}
	if !w.write(conn.NetConn(), time.Now()) {
		return false
	}
	s.c.stats.MessagesOut.Add(int64(w.frames))
	return true
}

// reader handles provider events until the socket ends; a socket that drops
// abnormally gets one reconnect.
func (s *Session) reader() {
	defer s.wg.Done()
	for {
		s.connMu.Lock()
		conn := s.conn
		s.connMu.Unlock()
		err := s.readLoop(conn)
		select {
		case <-s.stop:
			return
		default:
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
			// The agent ended the conversation (end_call, or the provider's max duration).
			s.log.Info("provider closed the conversation", "text", ce.Text)
			s.hangupAfterAudio(sip.EndAgentHangup)
			return
		}
		if s.ending.Load() {
			return
		}
		s.log.Warn("provider websocket dropped", "err", err)
		if s.reconnects == 0 && s.reconnect() {
			continue
		}
		s.failCall()
		return
	}
}

// readBufs are the buffers one provider message is read and decoded into.
// They are shared by all sessions through readBufPool and held only while a
// message is handled: an agent's audio comes in messages of up to a few
// tens of KiB (16 kHz PCM in base64), and a buffer of that size kept by
// each idle session would be most of a call's memory.
type readBufs struct{ msg, audio []byte }

var readBufPool = sync.Pool{New: func() any { return new(readBufs) }}

// readLoop reads one socket until it fails.
func (s *Session) readLoop(conn *websocket.Conn) error {
	conn.SetReadDeadline(time.Time{})
	for {
		_, r, err := conn.NextReader()
		if err != nil {
			return err
		}
		rb := readBufPool.Get().(*readBufs)
		err = s.readMessage(r, rb)
		readBufPool.Put(rb)
		if err != nil {
			return err
		}
	}
}

// readMessage reads and handles one provider message.
func (s *Session) readMessage(r io.Reader, rb *readBufs) error {
	var err error
	if rb.msg, err = readAll(r, rb.msg[:0]); err != nil {
		return err
	}
	msg := rb.msg
	s.c.stats.MessagesIn.Add(1)
	if audio, id, ok := parseAudio(msg, rb.audio); ok {
		rb.audio = audio[:cap(audio)]
		s.onProviderAudio(audio, id)
		return nil
	}
	var ev serverEvent
	if err := json.Unmarshal(msg, &ev); err != nil {
		s.log.Warn("unreadable provider message", "err", err)
		return nil
	}
	s.onEvent(&ev)
	return nil
}

func (s *Session) onProviderAudio(audio []byte, id int64) {
	if s.interruptID != 0 && (id < s.interruptID || id == s.cutID) {
		return // barge-in: audio of an interrupted reply
	}
	s.lastAudio = id
	if cb := s.call.Load(); cb != nil {
		if err := cb.Play(audio); err != nil && !errors.Is(err, media.ErrClosed) {
			s.log.Warn("cannot play provider audio", "err", err)
		}
		return
	}
	s.pendingMu.Lock()
	s.pending = append(s.pending, append([]byte(nil), audio...))
	s.pendingMu.Unlock()
}

func (s *Session) onEvent(ev *serverEvent) {
	switch ev.Type {
	case "ping":
		if ev.Ping != nil {
			s.send(pongMsg(ev.Ping.EventID))
			if ev.Ping.PingMS != nil && s.c.Observer != nil {
				s.c.Observer.ProviderRTT(time.Duration(*ev.Ping.PingMS) * time.Millisecond)
			}
		}
	case "interruption":
		if ev.Interruption != nil {
			s.interruptID, s.cutID = ev.Interruption.EventID, s.lastAudio
		}
		s.pendingMu.Lock()
		s.pending = nil
		s.pendingMu.Unlock()
		if cb := s.call.Load(); cb != nil {
			n := cb.Flush()
			s.log.Debug("barge-in: queued audio dropped", "frames", n)
		}
	case "user_transcript":
		if ev.UserTranscript != nil && strings.TrimSpace(ev.UserTranscript.Text) != "" {
			s.rec.entry("user", ev.UserTranscript.Text, s.since())
		}
	case "agent_response":
		if ev.AgentResponse != nil && strings.TrimSpace(ev.AgentResponse.Text) != "" {
			s.rec.entry("agent", ev.AgentResponse.Text, s.since())
		}
	case "agent_response_correction":
		if ev.Correction != nil {
			s.rec.add(recJob{correct: true, entry: &store.TranscriptEntry{Role: "agent", Message: ev.Correction.Corrected, Timestamp: s.since()}})
		}
	case "client_tool_call":
		if ev.ToolCall != nil {
			s.onToolCall(ev.ToolCall.ToolName, ev.ToolCall.ToolCallID, ev.ToolCall.Parameters)
		}
	case "agent_tool_response":
		// The provider ran one of its system tools. end_call is followed by the
		// close (1000) that ends the call, before or after the farewell's audio:
		// the call ends on the close, once the audio has played. Should the close
		// never come, the call ends after Connector.EndCallGrace all the same.
		if ev.AgentToolResponse != nil && ev.AgentToolResponse.ToolName == "end_call" && !ev.AgentToolResponse.IsError &&
			s.endCallSeen.CompareAndSwap(false, true) {
			s.log.Info("the agent ended the call (end_call); waiting for the provider to close")
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				t := time.NewTimer(s.c.EndCallGrace)
				defer t.Stop()
				select {
				case <-t.C:
					s.log.Warn("no close from the provider after end_call; hanging up")
					s.hangupAfterAudio(sip.EndAgentHangup)
				case <-s.stop:
				}
			}()
		}
	case "error":
		if ev.Error != nil {
			s.log.Warn("provider error", "code", ev.Error.Code, "type", ev.Error.ErrorType, "message", ev.Error.Message)
		}
	}
}

// onToolCall runs a client tool the agent called: the gateway declares only the
// transfer tool.
func (s *Session) onToolCall(name, id string, params map[string]any) {
	switch name {
	case elevenlabs.TransferTool:
		// Tracked: Close waits for it, so what it records (the transfer's outcome)
		// is written before the call's record is final. The reader, the only
		// caller, has stopped before Close waits.
		s.tools.Add(1)
		go func() {
			defer s.tools.Done()
			s.transfer(id, params)
		}()
	default:
		s.log.Info("unknown tool called", "tool", name)
		s.send(toolResult(id, fmt.Sprintf("Unknown tool %q: the gateway cannot run it.", name), true))
	}
}

// hangupAfterAudio ends the call once the agent's last audio has played.
func (s *Session) hangupAfterAudio(reason string) {
	if !s.ending.CompareAndSwap(false, true) {
		return
	}
	if cb := s.call.Load(); cb != nil {
		select {
		case <-cb.Drained():
		case <-time.After(30 * time.Second):
		case <-s.stop:
		}
	}
	s.finish(sip.PeerEnd{Reason: reason})
}

// failCall: the provider is gone for good. The caller hears a short apology tone,
// then the call ends as failed.
func (s *Session) failCall() {
	s.ending.Store(true)
	if cb := s.call.Load(); cb != nil {
		cb.Flush()
		_ = cb.Play(apologyTone(s.format))
		select {
		case <-cb.Drained():
		case <-time.After(3 * time.Second):
		case <-s.stop:
		}
	}
	s.finish(sip.PeerEnd{Reason: sip.EndProviderError, Failed: true})
}

// Close implements sip.Peer: the call is over.
func (s *Session) Close(reason string) {
	s.stopped.Do(func() {
		s.ending.Store(true)
		s.connMu.Lock() // a reconnect installs its socket under connMu only while stop is open
		close(s.stop)
		conn := s.conn
		s.connMu.Unlock()
		if conn != nil {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "call ended: "+reason), time.Now().Add(time.Second))
			_ = conn.Close()
		}
		s.wg.Wait()
		s.tools.Wait() // a transfer under way is cancelled by stop; its outcome is recorded before the flush
		s.finish(sip.PeerEnd{Reason: reason})
		s.rec.flush(3 * time.Second)
		if d := s.audioDrop.Load(); d > 0 {
			s.log.Warn("caller audio dropped because the provider socket was slow", "chunks", d)
		}
		s.digitMu.Lock()
		if s.digitT != nil {
			s.digitT.Stop()
		}
		s.digitMu.Unlock()
		s.c.analyse(s.info, s.convIDs)
	})
}

// transfer runs the transfer tool: the destination must be one of the agent's;
// the call's transfer (REFER or bridged) either succeeds — the caller is gone to
// a human — or fails, and the agent is told so it can say so.
func (s *Session) transfer(id string, params map[string]any) {
	target, _ := params["destination"].(string)
	target = strings.TrimSpace(target)
	if reason, _ := params["reason"].(string); reason != "" {
		s.log.Info("the agent asks for a transfer", "destination", target, "reason", reason)
	}
	cfg := store.ParseAgentConfig(s.info.Agent.Config)
	var dest *store.TransferDestination
	for i, d := range cfg.Transfer.Destinations {
		if sameDestination(d.Number, target) {
			dest = &cfg.Transfer.Destinations[i]
			break
		}
	}
	if dest == nil {
		s.log.Info("transfer to a destination the agent does not have", "target", target)
		s.send(toolResult(id, fmt.Sprintf("%q is not one of this agent's transfer destinations; the call goes on.", target), true))
		return
	}
	cb := s.call.Load()
	if cb == nil {
		s.send(toolResult(id, "The call is not connected yet.", true))
		return
	}
	s.rec.entry("system", "Transfer to "+dest.Number+" requested.", s.since())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { // the call ended meanwhile: the transfer stops
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := cb.Transfer(ctx, dest.Number, cfg.Transfer.Mode == "bridge")
	if err != nil {
		s.log.Info("transfer failed", "target", dest.Number, "err", err)
		s.rec.entry("system", "Transfer to "+dest.Number+" failed: "+err.Error()+".", s.since())
		s.send(toolResult(id, "The transfer failed ("+err.Error()+"). Tell the caller and carry on with the conversation.", true))
		return
	}
	s.rec.entry("system", "Call transferred to "+dest.Number+".", s.since())
	s.send(toolResult(id, "The caller has been transferred to "+dest.Number+".", false))
	// The caller is with a human now (REFER: the call is ending; bridged: the call
	// goes on between the caller and the destination): the agent leaves the call.
	go s.Close(sip.EndTransferred)
}

// sameDestination compares an E.164 number or a sip: URI as the agent configured it
// with what the provider asked for.
func sameDestination(configured, asked string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		if strings.HasPrefix(s, "sip:") || strings.HasPrefix(s, "sips:") {
			return s
		}
		var b strings.Builder
		for _, r := range s {
			if r >= '0' && r <= '9' {
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	return asked != "" && norm(configured) == norm(asked)
}

// apologyTone is 0.6 s of a falling two-tone in the call's format.
func apologyTone(f media.Format) []byte {
	return append(media.Tone(f, []float64{620}, 0.25, 300*time.Millisecond), media.Tone(f, []float64{480}, 0.25, 300*time.Millisecond)...)
}

var _ sip.Peer = (*Session)(nil)
