package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/store"
)

// Session is one call's conversation with its voice-AI provider; it is the call's
// callpath.Peer. Caller audio leaves in the provider's audio messages; the agent's
// audio is played through the call's pacer; transcripts go to the store as they
// happen; keypad entries, transfers and the end of the call are handled here for
// every provider alike. What the messages look like is the provider's
// Conversation's business.
//
// Goroutines: the reader (provider messages; it also reconnects once when the
// socket drops), the writer (the only one to write the socket), the transcript
// recorder, and those spawn starts (a transfer under way, the wait for the
// provider's close after end_call, the hang-up once the last audio has played,
// a keypad entry sent after its pause). Close stops them all and waits for them.
type Session struct {
	c      *Connector
	p      Provider
	info   *callpath.Info
	cfg    store.AgentConfig
	log    *slog.Logger
	format media.Format

	chunkBytes int
	rec        callpath.Record

	connMu sync.Mutex
	conv   Conversation   // the current conversation
	convs  []Conversation // every one, in order (more than one after a reconnect)
	// wire is the current conversation with its socket as a write needs it,
	// stored by attach with conv: the shard's direct write of each chunk reads
	// it with one atomic load instead of taking connMu and going from the
	// conversation to its websocket, its net.Conn and the nbConn under it
	// (each a cache line of its own, cold at 500 calls, every 20 ms).
	wire atomic.Pointer[wireConn]

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
	ringCalm  int // the writer's wakes in a row that found at most two chunks (settleRingLocked)
	audioDrop atomic.Int64
	wake      chan struct{}
	ctrl      chan []byte
	// ctrlN counts the control messages queued or being written: the shard
	// writes audio itself only while it is 0, so a message queued before a chunk
	// was complete goes out before it, as when the writer wrote everything.
	ctrlN atomic.Int32

	// writeMu is held by whoever writes on the provider's socket: the writer, the
	// shard writing a chunk itself (writeDirect, which only tries it), gorilla's
	// pong and close replies, and Close's last word. It keeps the frames in order
	// (the ring is drained and written under it), and means the shard never waits
	// for a TLS record that another write is blocked in. The fields below are
	// under it.
	writeMu sync.Mutex
	fw      frameWriter  // the frames of the write under way
	wmsg    []byte       // one audio message, before framing
	wstamps []chunkStamp // of the audio chunks in the write under way
	wclosed bool         // Close wrote the last word: nothing follows it

	line      atomic.Pointer[lineBox]
	pending   [][]byte // agent audio before the call was answered
	pendingMu sync.Mutex
	// held is the transcript written before Start (the opening line the
	// provider says while the phone rings): written at Start, after its audio
	// was queued; dropped when the session closes unstarted (an unanswered
	// call, a machine hung up on), since nothing of it was played. Under
	// pendingMu, with pending.
	held []heldEntry
	// replyBytes is the agent audio of the current reply queued so far (reader).
	replyBytes  int
	ending      atomic.Bool
	endCallSeen atomic.Bool
	reconnects  int

	keys  keypad
	marks marks

	done    chan struct{}
	end     callpath.End
	endOnce sync.Once
	stop    chan struct{}
	stopped sync.Once
	// writerDone is closed when the writer has sent what was queued at stop
	// (a writer started for the whole call: writerStarted).
	writerDone    chan struct{}
	writerStarted bool
	// lazyWriter: the shard writes caller audio itself (the socket has an
	// nbConn), and the writer runs only while there is something for it (a
	// control message, a chunk the shard left, a backlog): wakeWriter starts it,
	// and it ends once it finds nothing more to write, so a call whose audio
	// keeps flowing holds no writer goroutine (and its stack) most of the time.
	// wrun is set while one runs. Set by the first attach, before any goroutine.
	lazyWriter bool
	wrun       atomic.Bool
	// wtask is the shard's deferred direct write (writeDeferred).
	wtask clock.Task
	// ctx is cancelled by Close: work the session started for the call (a
	// transfer under way) stops with it.
	ctx    context.Context
	cancel context.CancelFunc
	// spawnMu orders spawn against Close: nothing starts once Close began waiting.
	spawnMu sync.Mutex
	closing bool
	wg      sync.WaitGroup

	upstream func(fromArrival, fromPlayout time.Duration) // Connector.OnUpstream
}

type lineBox struct{ callpath.Line }

// wireConn is a conversation and its socket (Session.wire).
type wireConn struct {
	conv Conversation
	conn net.Conn // conv.Conn().NetConn()
	nb   *nbConn  // under conn (nil: none, the writer writes everything)
	// plain: conn is nb itself (ws://, no TLS between): a direct write goes to
	// it as a non-blocking write, without the nonBlocking flag a TLS record
	// needs to carry the mode down.
	plain bool
}

func newWireConn(conv Conversation) *wireConn {
	c := conv.Conn().NetConn()
	nb := nbOf(c)
	return &wireConn{conv: conv, conn: c, nb: nb, plain: nb != nil && net.Conn(nb) == c}
}

const (
	ringSlots     = 64  // 1.28 s of 20 ms chunks before the oldest is dropped
	ringStart     = 4   // slots allocated at first: a writer that keeps up needs one or two
	ringCalm      = 250 // wakes in a row with at most two chunks (5 s) before a grown ring shrinks back
	writeDeadline = 3 * time.Second
)

// ToolTransfer and ToolEndCall are the tools the gateway gives every agent, by the
// names the agent calls them: the transfer to a human (with a destination and a
// reason), and the end of the call (ElevenLabs runs its own end_call inside).
const (
	ToolTransfer = "transfer_call"
	ToolEndCall  = "end_call"
)

func newSession(c *Connector, p Provider, info *callpath.Info) *Session {
	s := &Session{c: c, p: p, info: info, cfg: info.Config, log: info.Log, rec: info.Record, upstream: c.OnUpstream,
		wake: make(chan struct{}, 1), ctrl: make(chan []byte, 64), done: make(chan struct{}), stop: make(chan struct{}), writerDone: make(chan struct{}),
		ring: make([][]byte, ringStart), stamps: make([]chunkStamp, ringStart)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wtask.Init(s.writeDeferred)
	return s
}

// attach makes conv the session's conversation (the first, or a reconnect's).
func (s *Session) attach(conv Conversation) {
	if s.conv == nil {
		s.format, s.chunkBytes = conv.Format(), max(conv.ChunkBytes(), 1)
		s.partial = make([]byte, 0, s.chunkBytes+640)
		s.lazyWriter = nbOf(conv.Conn().NetConn()) != nil
	}
	s.conv = conv
	s.convs = append(s.convs, conv)
	s.wire.Store(newWireConn(conv))
	// gorilla's own replies (pong, and close's echo, as its default handlers send
	// them), under writeMu like every write of the call. Their write deadline
	// replaces the writer's, which is set again at its next write.
	conn := conv.Conn()
	conn.SetPingHandler(func(data string) error {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		s.fw.conn = nil
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		var ne net.Error
		if err == websocket.ErrCloseSent || errors.As(err, &ne) {
			return nil
		}
		return err
	})
	conn.SetCloseHandler(func(code int, _ string) error {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		s.fw.conn = nil
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		return nil
	})
}

// spawn runs f on a goroutine Close waits for; false (f not run) once Close began.
func (s *Session) spawn(f func()) bool {
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Format implements callpath.Peer.
func (s *Session) Format() media.Format { return s.format }

// Start implements callpath.Peer: the call is answered; audio the provider sent while it
// rang (the opening line) plays now.
func (s *Session) Start(call callpath.Line) error {
	s.pendingMu.Lock()
	s.line.Store(&lineBox{call})
	pending, held := s.pending, s.held
	s.pending, s.held = nil, nil
	s.pendingMu.Unlock()
	for _, a := range pending {
		if err := call.Play(a); err != nil {
			return err
		}
	}
	for _, h := range held {
		h.write(s)
	}
	return nil
}

// heldEntry is a transcript entry or correction made before Start.
type heldEntry struct {
	role    store.Role
	text    string
	correct bool
}

func (h heldEntry) write(s *Session) {
	if h.correct {
		s.rec.CorrectAgent(h.text, s.since())
		return
	}
	s.rec.Entry(h.role, h.text, s.since())
}

// hold keeps h until Start when the session is not started; false: it is,
// write h now.
func (s *Session) hold(h heldEntry) bool {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	if s.line.Load() != nil {
		return false
	}
	s.held = append(s.held, h)
	return true
}

// started reports whether Start was called.
func (s *Session) started() bool { return s.line.Load() != nil }

// OnAudio implements callpath.Peer: a 20 ms frame of caller audio (media goroutine).
func (s *Session) OnAudio(f media.Frame) {
	if s.line.Load() == nil || s.ending.Load() {
		return // not answered yet, or the call is over and media just has not stopped
	}
	s.audioMu.Lock()
	// In the session's format: µ-law, or 16 kHz PCM as little-endian bytes. A
	// frame that is a whole chunk with nothing before it (a provider's chunk is
	// a 20 ms frame) goes to the ring as it is, not through partial.
	chunk := f.Audio
	if len(s.partial) > 0 || len(chunk) < s.chunkBytes {
		s.partial = append(s.partial, f.Audio...)
		chunk = s.partial
	}
	if f.Arrival.After(s.partStamp.arrival) {
		s.partStamp.arrival = f.Arrival
	}
	s.partStamp.due = f.Due
	if len(chunk) < s.chunkBytes {
		s.audioMu.Unlock()
		return
	}
	s.pushChunkLocked(chunk)
	s.audioMu.Unlock()
	// The shard writes the chunk itself unless it is behind: when the next
	// frame is already due, this playout goes on at once with it, and the
	// writer, woken now, sends what it finds in one write (or the shard does, at
	// the next chunk: whoever writes takes the whole ring).
	if !directWrites {
		s.wakeWriter()
		return
	}
	now := time.Now()
	if !f.Due.IsZero() && now.Sub(f.Due) >= 20*time.Millisecond {
		s.wakeWriter()
		return
	}
	// On a wheel shard the write waits for the end of the tick (Defer): the
	// tick's other playouts then run without waiting for it, and the pacers,
	// which run first, never did. The ring is drained then, so a chunk and
	// the control messages queued meanwhile keep their order as before.
	if f.Shard != nil && deferWrites {
		f.Shard.Defer(&s.wtask)
		return
	}
	if !s.writeDirect(now) {
		s.wakeWriter()
	}
}

// deferWrites: a chunk's direct write runs at the end of its shard's tick
// (clock.Shard.Defer), after every timer of the tick. Off (CXCO_DEFER_WRITE=0):
// written at once from the playout that completed it; for an A/B.
var deferWrites = os.Getenv("CXCO_DEFER_WRITE") != "0"

// writeDeferred is the deferred direct write (wtask), at the end of the tick
// that completed a chunk: the ring, or the writer's if it cannot now.
func (s *Session) writeDeferred() {
	if !s.writeDirect(time.Now()) {
		s.wakeWriter()
	}
}

// wakeWriter has the writer look at what is queued, starting it if it is lazy
// and not running.
func (s *Session) wakeWriter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if s.lazyWriter && s.wrun.CompareAndSwap(false, true) && !s.spawn(s.writer) {
		s.wrun.Store(false) // Close began: it writes what is queued itself
	}
}

// writerIdle reports whether nothing is queued for the writer.
func (s *Session) writerIdle() bool {
	if s.ctrlN.Load() != 0 {
		return false
	}
	if wc := s.wire.Load(); wc != nil && wc.nb != nil && wc.nb.pending() {
		return false
	}
	s.audioMu.Lock()
	defer s.audioMu.Unlock()
	return s.ringLen == 0
}

// writeDirect writes the ring's chunks (normally the one just completed) from the
// goroutine that completed it, the wheel's shard, without waking the writer: the
// channel send, the goroutine switch and the select per 20 ms chunk were a third of
// what a chunk cost besides its write(2). It never blocks: false (the writer is to
// do it) when someone else is writing, a control message is queued, or the socket
// has bytes waiting from an earlier write; what the kernel does not take now stays
// in the nbConn's backlog, in order, for the writer to flush. The write is one
// frame per chunk, as the writer's.
func (s *Session) writeDirect(now time.Time) bool { return s.writeNow(now, nil) }

// sendDirect writes control message msg from the goroutine that sends it (the
// reader, answering the provider's ping), as writeDirect does a chunk: ahead of
// any audio still queued, as the writer would have. False: it is the writer's.
func (s *Session) sendDirect(msg []byte) bool { return s.writeNow(time.Time{}, msg) }

// writeNow writes msg, or the ring's chunks when msg is nil, without blocking
// (writeDirect, sendDirect).
func (s *Session) writeNow(now time.Time, msg []byte) bool {
	if !s.writeMu.TryLock() {
		return false
	}
	defer s.writeMu.Unlock()
	if s.wclosed || s.ctrlN.Load() != 0 {
		return false
	}
	wc := s.wire.Load()
	if wc == nil || wc.nb == nil || wc.nb.pending() {
		return false
	}
	nb := wc.nb
	w := &s.fw
	if msg != nil {
		w.add(msg)
	} else if s.drainLocked(wc.conv, w, false); w.frames == 0 {
		return true // the writer took it meanwhile
	}
	var err error
	if wc.plain {
		err = nb.writeNonBlocking(w.buf)
	} else {
		nb.nonBlocking.Store(true)
		_, err = wc.conn.Write(w.buf)
		nb.nonBlocking.Store(false)
	}
	if err == nil {
		s.wrote(w, now)
		if nb.pending() {
			s.wakeWriter() // the rest of this write, from the writer's side
		}
	}
	w.reset()
	s.wstamps = s.wstamps[:0]
	return true
}

// drainLocked frames the queued control messages (with ctrl) and then every chunk
// in the ring into w (under writeMu), and returns how many control messages it
// took. Both are taken under audioMu, so a message queued before a chunk was
// pushed is taken with it or before it, never after.
func (s *Session) drainLocked(conv Conversation, w *frameWriter, ctrl bool) (n int32) {
	s.audioMu.Lock()
	for ctrl {
		select {
		case m := <-s.ctrl:
			w.add(m)
			n++
		default:
			ctrl = false
		}
	}
	drained := s.ringLen
	for s.ringLen > 0 {
		s.wmsg = conv.AppendAudio(s.wmsg[:0], s.ring[s.ringHead])
		w.add(s.wmsg)
		s.wstamps = append(s.wstamps, s.stamps[s.ringHead])
		s.ringHead = (s.ringHead + 1) % len(s.ring)
		s.ringLen--
	}
	s.settleRingLocked(drained)
	s.audioMu.Unlock()
	return n
}

// wrote counts the frames in w as sent at now and tells how long their chunks
// took (under writeMu). A direct write's now is taken just before it (its write
// takes microseconds; the histogram's first bucket is 100 µs).
func (s *Session) wrote(w *frameWriter, now time.Time) {
	s.c.stats.MessagesOut.Add(int64(w.frames))
	if s.upstream == nil {
		return
	}
	for _, st := range s.wstamps {
		if !st.arrival.IsZero() && !st.due.IsZero() {
			s.upstream(now.Sub(st.arrival), now.Sub(st.due))
		}
	}
}

// nbOf is the nbConn under a provider socket (plain, or under TLS), or nil.
func nbOf(c net.Conn) *nbConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	nb, _ := c.(*nbConn)
	return nb
}

// chunkStamp times an audio chunk: the arrival of its newest RTP packet and the
// playout time of its last frame (when the jitter buffer released it).
type chunkStamp struct{ arrival, due time.Time }

// pushChunkLocked copies a completed chunk (partial, or a whole frame) into the ring
// (growing it up to ringSlots, then dropping the oldest when full) and starts the
// next partial chunk.
func (s *Session) pushChunkLocked(chunk []byte) {
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
	s.ring[i] = append(s.ring[i][:0], chunk...)
	s.stamps[i] = s.partStamp
	s.ringLen++
	s.partial = s.partial[:0]
	s.partStamp = chunkStamp{}
}

// settleRingLocked shrinks a ring that grew while the provider socket was slow back
// to ringStart slots (and lets their chunks go) once the writer has kept up — at
// most two chunks a wake — for ringCalm wakes in a row. The writer calls it with
// the ring just drained (empty). A stall otherwise left every call holding up to
// 64 chunks and their stamps (14 KiB of µ-law, 45 KiB of 16 kHz PCM).
func (s *Session) settleRingLocked(drained int) {
	if len(s.ring) == ringStart || drained > 2 {
		s.ringCalm = 0
		return
	}
	if s.ringCalm++; s.ringCalm >= ringCalm && s.ringLen == 0 {
		s.ring, s.stamps, s.ringHead, s.ringCalm = make([][]byte, ringStart), make([]chunkStamp, ringStart), 0, 0
	}
}

// Done implements callpath.Peer.
func (s *Session) Done() <-chan struct{} { return s.done }

// End implements callpath.Peer.
func (s *Session) End() callpath.End { return s.end }

func (s *Session) finish(e callpath.End) {
	s.endOnce.Do(func() {
		s.end = e
		close(s.done)
	})
}

// send queues a control message for the writer (never blocks the caller for long).
func (s *Session) send(msg []byte) {
	if msg == nil {
		return
	}
	if s.lazyWriter && s.sendDirect(msg) {
		return
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	s.ctrlN.Add(1)
	select {
	case s.ctrl <- msg:
		if s.lazyWriter {
			s.wakeWriter()
		}
	case <-s.stop:
		s.ctrlN.Add(-1)
	case <-t.C:
		s.ctrlN.Add(-1)
		s.log.Warn("provider control queue full; message dropped")
	}
}

// current is the conversation the session talks to now.
func (s *Session) current() Conversation {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return s.conv
}

// since is the seconds since the call was answered (0 before), for transcript
// timestamps.
func (s *Session) since() float64 {
	lb := s.line.Load()
	if lb == nil {
		return 0
	}
	at := lb.AnsweredAt()
	if at.IsZero() {
		return 0
	}
	return math.Round(time.Since(at).Seconds()*10) / 10
}

// writer writes what the shard does not (writeDirect): control messages first, then
// caller audio, each audio chunk its own message, in one write whatever is queued
// when it wakes (several chunks after a scheduling delay, a pong with a chunk); a
// chunk never waits for another. It also flushes what a direct write left in the
// nbConn's backlog. Frames are built masked, as a client's must be, without
// allocating.
//
// A lazy writer (lazyWriter) returns once it finds nothing more to write; one
// that sees stop, or finds that Close has written the last word, returns too.
func (s *Session) writer() {
	if !s.lazyWriter {
		defer close(s.writerDone)
	}
	for {
		stopping := false
		var first []byte
		select {
		case <-s.stop:
			stopping = true // what is still queued (a last message) goes out first
		case first = <-s.ctrl:
		case <-s.wake:
		}
		s.writeMu.Lock()
		if s.wclosed {
			s.writeMu.Unlock()
			return
		}
		s.writeQueuedLocked(first)
		s.writeMu.Unlock()
		if stopping {
			return
		}
		if s.lazyWriter && s.writerIdle() {
			// Whoever queues something after this sees wrun false and starts
			// another writer; what was queued before it is seen here.
			s.wrun.Store(false)
			if s.writerIdle() || !s.wrun.CompareAndSwap(false, true) {
				return
			}
		}
	}
}

// writeQueuedLocked writes first, the queued control messages and the ring's audio
// in one write, blocking (under writeMu).
func (s *Session) writeQueuedLocked(first []byte) {
	w := &s.fw
	var n int32
	if first != nil {
		w.add(first)
		n++
	}
	conv := s.current()
	n += s.drainLocked(conv, w, true)
	c := conv.Conn().NetConn()
	switch {
	case w.frames > 0:
		if now := time.Now(); w.write(c, now) {
			s.wrote(w, time.Now())
		}
	case nbOf(c) != nil && nbOf(c).pending():
		// Woken for a direct write's remainder.
		if w.arm(c, time.Now()) {
			_ = nbOf(c).flush()
		}
	}
	s.ctrlN.Add(-n) // written (or lost with the socket): audio may go direct again
	w.reset()
	s.wstamps = s.wstamps[:0]
	if cap(s.wstamps) > 16 {
		s.wstamps = nil // a stall's batch: not kept for the call's life
	}
}

// reader handles provider messages until the socket ends; a socket that drops
// abnormally gets one reconnect.
func (s *Session) reader() {
	for {
		conv := s.current()
		for _, m := range conv.Early() {
			conv.Handle(m, (*events)(s))
		}
		err := s.readLoop(conv)
		select {
		case <-s.stop:
			return
		default:
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
			// The agent ended the conversation (end_call, or the provider's max duration).
			s.log.Info("provider closed the conversation", "text", ce.Text)
			s.hangupAfterAudio(callpath.AgentHangup)
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

// readBuf is the buffer one provider message is read into. They are shared by
// all sessions through readBufPool and held only while a message is handled: an
// agent's audio comes in messages of up to a few tens of KiB, and a buffer of
// that size kept by each idle session would be most of a call's memory.
type readBuf struct{ b []byte }

var readBufPool = sync.Pool{New: func() any { return new(readBuf) }}

// readLoop reads one conversation's socket until it fails.
func (s *Session) readLoop(conv Conversation) error {
	conn := conv.Conn()
	conn.SetReadDeadline(time.Time{})
	ev := (*events)(s)
	for {
		_, r, err := conn.NextReader()
		if err != nil {
			return err
		}
		rb := readBufPool.Get().(*readBuf)
		rb.b, err = readAll(r, rb.b[:0])
		if err == nil {
			s.c.stats.MessagesIn.Add(1)
			conv.Handle(rb.b, ev)
		}
		readBufPool.Put(rb)
		if err != nil {
			return err
		}
	}
}

// reconnect replaces a dropped conversation once, within
// Connector.ReconnectTimeout, telling the provider what was said so far.
func (s *Session) reconnect() bool {
	s.reconnects++
	ctx, cancel := context.WithTimeout(context.Background(), s.c.ReconnectTimeout)
	defer cancel()
	conv, err := s.p.Dial(ctx, s.info, &Resume{Digest: s.transcriptDigest()})
	if s.c.Observer != nil {
		s.c.Observer.ProviderReconnect(err == nil)
	}
	if err != nil {
		s.log.Warn("provider reconnect failed", "err", err)
		return false
	}
	s.connMu.Lock()
	select {
	case <-s.stop: // the call ended while we dialled
		s.connMu.Unlock()
		conv.Conn().Close()
		return false
	default:
	}
	old := s.conv
	s.attach(conv)
	s.connMu.Unlock()
	old.Conn().Close()
	s.log.Info("provider reconnected", "provider_conversation_id", conv.ID())
	return true
}

// transcriptDigest is the conversation so far, in a few lines.
func (s *Session) transcriptDigest() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	tr, err := s.rec.Transcript(ctx)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, e := range tr[max(0, len(tr)-12):] {
		fmt.Fprintf(&b, "%s: %s\n", e.Role, e.Message)
	}
	return b.String()
}

// hangupAfterAudio ends the call once the agent's last audio has played.
func (s *Session) hangupAfterAudio(reason callpath.Reason) {
	if !s.ending.CompareAndSwap(false, true) {
		return
	}
	if lb := s.line.Load(); lb != nil {
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		select {
		case <-lb.Drained():
		case <-t.C:
		case <-s.stop:
		}
	}
	s.finish(callpath.End{Reason: reason})
}

// failCall: the provider is gone for good. The caller hears a short apology tone,
// then the call ends as failed.
func (s *Session) failCall() {
	s.ending.Store(true)
	if lb := s.line.Load(); lb != nil {
		lb.Flush()
		_ = lb.Play(apologyTone(s.format))
		t := time.NewTimer(3 * time.Second)
		defer t.Stop()
		select {
		case <-lb.Drained():
		case <-t.C:
		case <-s.stop:
		}
	}
	s.finish(callpath.Fail(callpath.ProviderError))
}

// Close implements callpath.Peer: the call is over. The provider's socket is closed,
// every goroutine of the session stopped and waited for, the transcript written.
func (s *Session) Close(reason callpath.Reason) {
	s.stopped.Do(func() {
		s.ending.Store(true)
		s.spawnMu.Lock()
		s.closing = true
		s.spawnMu.Unlock()
		s.connMu.Lock() // a reconnect installs its socket under connMu only while stop is open
		close(s.stop)
		conv := s.conv
		s.connMu.Unlock()
		s.cancel()
		if s.writerStarted {
			<-s.writerDone // its last write has its deadline
		}
		conn := conv.Conn()
		s.writeMu.Lock() // a direct write of caller audio under way ends first, and none follows
		if s.lazyWriter {
			// What was queued before the end (end_call's tool result) goes out
			// first: no writer may be running to send it.
			s.writeQueuedLocked(nil)
		}
		s.wclosed = true
		if st, ok := conv.(Stopper); ok {
			// The provider's last word (Media Streams' stop), written here once
			// the writer is done, so it is neither raced by the writer's exit
			// nor lost to a full queue.
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			_ = conn.WriteMessage(websocket.TextMessage, st.Stop())
		}
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "call ended: "+string(reason)), time.Now().Add(time.Second))
		_ = conn.Close()
		s.writeMu.Unlock()
		s.keys.stop()
		s.wg.Wait()
		if f, ok := conv.(Finisher); ok {
			f.Finish((*events)(s)) // the reader has stopped: nothing handles messages now
		}
		s.finish(callpath.End{Reason: reason})
		s.recordUsage()
		if d := s.audioDrop.Load(); d > 0 {
			s.log.Warn("caller audio dropped because the provider socket was slow", "chunks", d)
		}
		if !s.started() {
			// Never started: nothing the provider said was played, so its lines
			// are not the call's transcript, and there is nothing to analyse.
			s.pendingMu.Lock()
			n := len(s.held)
			s.held, s.pending = nil, nil
			s.pendingMu.Unlock()
			s.log.Info("provider session closed before the call reached it; its transcript is not recorded", "entries_dropped", n)
			return
		}
		s.c.analyse(s.p, s.info, s.convs)
	})
}

// recordUsage adds what the conversations counted (Usage) to the conversation's
// metadata_.
func (s *Session) recordUsage() {
	var all []map[string]any
	for _, c := range s.convs {
		if u, ok := c.(Usage); ok {
			if m := u.Usage(); len(m) > 0 {
				all = append(all, m)
			}
		}
	}
	if len(all) == 0 {
		return
	}
	// The call's conversations (one per reconnect) added up here, and the
	// totals set in metadata_: a replayed write changes nothing.
	sum := map[string]any{}
	for _, m := range all {
		mergeCounts(sum, m)
	}
	s.rec.Metadata(sum)
}

// mergeCounts adds the numbers of src into dst, recursively; other values replace.
func mergeCounts(dst, src map[string]any) {
	for k, v := range src {
		switch v := v.(type) {
		case map[string]any:
			d, _ := dst[k].(map[string]any)
			if d == nil {
				d = map[string]any{}
				dst[k] = d
			}
			mergeCounts(d, v)
		case int:
			dst[k] = toInt(dst[k]) + v
		case float64:
			if v == math.Trunc(v) {
				dst[k] = toInt(dst[k]) + int(v)
			} else {
				dst[k] = v
			}
		default:
			dst[k] = v
		}
	}
}

func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(n)
	}
	return 0
}

// frameBytes is the size of 20 ms of audio in format f.
func frameBytes(f media.Format) int {
	if f == media.FormatPCM16k {
		return 640
	}
	return 160
}

// apologyTone is 0.6 s of a falling two-tone in the call's format.
func apologyTone(f media.Format) []byte {
	return append(media.Tone(f, []float64{620}, 0.25, 300*time.Millisecond), media.Tone(f, []float64{480}, 0.25, 300*time.Millisecond)...)
}

// events is the session as its conversation sees it (Events).
type events Session

func (e *events) s() *Session { return (*Session)(e) }

// Audio implements Events: it plays the agent's audio, or keeps it until the
// call is answered (the opening line).
func (e *events) Audio(audio []byte) {
	s := e.s()
	s.replyBytes += len(audio)
	s.marks.mu.Lock()
	s.marks.bytes += int64(len(audio))
	s.marks.mu.Unlock()
	lb := s.line.Load()
	if lb == nil {
		s.pendingMu.Lock()
		if lb = s.line.Load(); lb == nil { // Start takes pending under the same lock
			s.pending = append(s.pending, append([]byte(nil), audio...))
		}
		s.pendingMu.Unlock()
	}
	if lb != nil {
		if err := lb.Play(audio); err != nil && !errors.Is(err, media.ErrClosed) {
			s.log.Warn("cannot play provider audio", "err", err)
		}
	}
}

// ReplyStarted implements Events.
func (e *events) ReplyStarted() { e.replyBytes = 0 }

// Interrupt implements Events: every queued frame of the agent's audio is dropped
// at once. What the caller heard of the reply is what was queued less what was
// dropped, to the frame.
func (e *events) Interrupt() time.Duration {
	s := e.s()
	s.pendingMu.Lock()
	early := len(s.pending) > 0
	s.pending = nil
	s.pendingMu.Unlock()
	lb := s.line.Load()
	if lb == nil || early {
		s.clearMarks()
		return 0
	}
	n := lb.Flush()
	s.clearMarks()
	s.log.Debug("barge-in: queued audio dropped", "frames", n)
	frames := s.replyBytes/frameBytes(s.format) - n
	return time.Duration(max(frames, 0)) * 20 * time.Millisecond
}

// Transcript implements Events.
func (e *events) Transcript(role store.Role, text string) {
	if strings.TrimSpace(text) == "" {
		return
	}
	if h := (heldEntry{role: role, text: text}); !e.s().hold(h) {
		h.write(e.s())
	}
}

// CorrectAgent implements Events.
func (e *events) CorrectAgent(text string) {
	if h := (heldEntry{text: text, correct: true}); !e.s().hold(h) {
		h.write(e.s())
	}
}

// ToolCall implements Events.
func (e *events) ToolCall(name, id string, args map[string]any) { e.s().onToolCall(name, id, args) }

// EndCall implements Events.
func (e *events) EndCall(wait time.Duration) {
	s := e.s()
	if !s.endCallSeen.CompareAndSwap(false, true) {
		return
	}
	if wait <= 0 {
		s.log.Info("the agent ended the call")
		s.spawn(func() { s.hangupAfterAudio(callpath.AgentHangup) })
		return
	}
	s.log.Info("the agent ended the call; waiting for the provider to close", "wait", wait)
	s.spawn(func() {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			s.log.Warn("the provider did not close the conversation after the agent ended the call; hanging up")
			s.hangupAfterAudio(callpath.AgentHangup)
		case <-s.stop:
		}
	})
}

// OnPlayed implements Events.
func (e *events) OnPlayed(fn func()) { e.s().onPlayed(fn) }

// Send implements Events.
func (e *events) Send(msg []byte) { e.s().send(msg) }

// RTT implements Events.
func (e *events) RTT(d time.Duration) {
	if e.c.Observer != nil {
		e.c.Observer.ProviderRTT(d)
	}
}

// Log implements Events.
func (e *events) Log() *slog.Logger { return e.log }

var (
	_ callpath.Peer = (*Session)(nil)
	_ Events        = (*events)(nil)
)
