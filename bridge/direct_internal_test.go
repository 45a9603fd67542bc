//go:build linux

package bridge

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/store"
)

// The shard's direct writes of caller audio (writeDirect, nbConn) against a real
// websocket on loopback, plain and TLS, whose socket buffers are made small so that
// the kernel soon takes only part of a write. What the provider reads is checked
// message by message (gorilla's server rejects a torn or unmasked frame): the audio
// chunks in the order given, none lost while the ring had room, and every control
// message ahead of each chunk whose OnAudio began after the message was queued.

// orderConv frames a chunk as "A:" and the base64 of its bytes (the chunk's index
// is in its first 4 bytes), as a provider's audio message carries it.
type orderConv struct{ ws *websocket.Conn }

func (c *orderConv) Conn() *websocket.Conn { return c.ws }
func (c *orderConv) ID() string            { return "order" }
func (c *orderConv) Format() media.Format  { return media.FormatULaw8k }
func (c *orderConv) ChunkBytes() int       { return 160 }
func (c *orderConv) Early() [][]byte       { return nil }
func (c *orderConv) AppendAudio(dst, chunk []byte) []byte {
	dst = append(dst, "A:"...)
	return base64.StdEncoding.AppendEncode(dst, chunk)
}
func (c *orderConv) Handle([]byte, Events)                    {}
func (c *orderConv) Keypad(string, store.KeypadMode) [][]byte { return nil }
func (c *orderConv) ToolResult(string, string, bool) [][]byte { return nil }

// directPair is a session on a websocket to a server on loopback (TLS with tlsOn)
// with 4 KiB socket buffers on both sides, and the server's end of it. The
// session's writer is lazy (started when there is something for it), as
// Connect leaves it with an nbConn.
func directPair(t *testing.T, tlsOn bool) (*Session, *websocket.Conn) {
	t.Helper()
	return directPairBuf(t, tlsOn, 4096)
}

// directPairBuf is directPair with socket buffers of sockBuf bytes (0: the
// kernel's defaults).
func directPairBuf(t testing.TB, tlsOn bool, sockBuf int) (*Session, *websocket.Conn) {
	t.Helper()
	if !directWrites {
		t.Skip("CXCO_DIRECT_WRITE=0")
	}
	small := func(opt int) func(_, _ string, c syscall.RawConn) error {
		return func(_, _ string, c syscall.RawConn) error {
			if sockBuf == 0 {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, sockBuf) })
			if err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := (&net.ListenConfig{Control: small(syscall.SO_RCVBUF)}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil); err == nil {
			accepted <- ws
		}
	}))
	srv.Listener.Close()
	srv.Listener = ln
	d := websocket.Dialer{NetDialContext: NetDial((&net.Dialer{Control: small(syscall.SO_SNDBUF)}).DialContext)}
	scheme := "ws"
	if tlsOn {
		srv.StartTLS()
		d.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
		scheme = "wss"
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	ws, _, err := d.Dial(scheme+"://"+strings.TrimPrefix(strings.TrimPrefix(srv.URL, "https://"), "http://"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sws := <-accepted
	t.Cleanup(func() { sws.Close() })
	if nbOf(ws.NetConn()) == nil {
		t.Fatalf("the provider socket (%T) has no nbConn: no direct writes", ws.NetConn())
	}
	log := slog.New(slog.DiscardHandler)
	c := &Connector{Log: log}
	c.init()
	s := newSession(c, nil, &callpath.Info{Log: log})
	s.attach(&orderConv{ws: ws})
	if !s.lazyWriter {
		t.Fatal("a session on an nbConn without a lazy writer")
	}
	s.line.Store(&lineBox{})
	t.Cleanup(func() { s.Close(callpath.CallerHangup) })
	return s, sws
}

// chunk gives the session chunk i (one 20 ms frame of µ-law) from the shard's side.
func chunk(s *Session, i int) {
	b := make([]byte, 160)
	binary.BigEndian.PutUint32(b, uint32(i))
	s.OnAudio(media.Frame{Audio: b})
}

// wireMsg is a message the provider read: chunk i or control message i.
type wireMsg struct {
	ctrl bool
	i    int
}

// readWire reads messages from ws until audio chunk last arrives; each must be a
// whole audio chunk or a control message "C:i".
func readWire(t *testing.T, ws *websocket.Conn, last int, credit chan struct{}) []wireMsg {
	t.Helper()
	var got []wireMsg
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		switch {
		case strings.HasPrefix(string(m), "A:"):
			b, err := base64.StdEncoding.DecodeString(string(m[2:]))
			if err != nil || len(b) != 160 {
				t.Fatalf("audio message %q... is not a whole chunk (%v)", m[:min(len(m), 20)], err)
			}
			i := int(binary.BigEndian.Uint32(b))
			got = append(got, wireMsg{i: i})
			select {
			case credit <- struct{}{}:
			default:
			}
			if i == last {
				return got
			}
		case strings.HasPrefix(string(m), "C:"):
			i, err := strconv.Atoi(string(m[2:]))
			if err != nil {
				t.Fatalf("control message %q", m)
			}
			got = append(got, wireMsg{ctrl: true, i: i})
		default:
			t.Fatalf("unexpected message %q", m)
		}
	}
}

// checkOrder checks what the provider read: audio chunks in increasing order
// (every index from 0 when all), control messages in order, all of them (as many
// as before has), and control message i ahead of every chunk at or after
// before[i]. It returns the audio indices.
func checkOrder(t *testing.T, got []wireMsg, before []int, all bool) []int {
	t.Helper()
	var audio []int
	nextCtrl := 0
	for _, m := range got {
		if !m.ctrl {
			if n := len(audio); n > 0 && m.i <= audio[n-1] {
				t.Fatalf("chunk %d after chunk %d", m.i, audio[n-1])
			}
			audio = append(audio, m.i)
			continue
		}
		if m.i != nextCtrl {
			t.Fatalf("control message %d where %d was next", m.i, nextCtrl)
		}
		nextCtrl++
		for _, a := range audio {
			if a >= before[m.i] {
				t.Fatalf("chunk %d went out before control message %d, which was queued before the chunk's OnAudio began", a, m.i)
			}
		}
	}
	if nextCtrl != len(before) {
		t.Fatalf("%d control messages of %d arrived before the last chunk", nextCtrl, len(before))
	}
	if all {
		for i, a := range audio {
			if a != i {
				t.Fatalf("chunk %d missing (got %d there)", i, a)
			}
		}
	}
	return audio
}

// A direct write the kernel takes only part of leaves the rest in the backlog; from
// then on the shard writes nothing itself (the chunks go to the ring, EAGAIN's
// fallback), and the writer sends the backlog's remainder first, then the control
// messages and chunks queued meanwhile, in order and whole.
func TestDirectWritePartialRemainderFirst(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			s, srv := directPair(t, tlsOn)
			nb := nbOf(s.current().Conn().NetConn())
			// The server does not read: the shard writes every chunk itself until
			// the kernel stops taking them whole.
			i := 0
			for ; !nb.pending(); i++ {
				if i == 20000 {
					t.Fatal("20000 chunks written and the socket never took part of one: the buffers are not small")
				}
				chunk(s, i)
			}
			if direct := s.c.stats.MessagesOut.Load(); direct != int64(i) {
				t.Fatalf("%d of the first %d chunks were written by the shard, want all", direct, i)
			}
			t.Logf("the socket took part of chunk %d (%d chunks written whole)", i-1, i-1)
			if s.writeDirect(time.Now()) {
				t.Fatal("a direct write with bytes still waiting in the backlog")
			}
			// While the writer waits for the socket: more chunks (to the ring,
			// well under its 64) and control messages between them.
			var before []int
			for k := range 40 {
				chunk(s, i)
				i++
				if k%4 == 0 {
					s.send([]byte("C:" + strconv.Itoa(len(before))))
					before = append(before, i)
				}
			}
			if d := s.audioDrop.Load(); d > 0 {
				t.Fatalf("%d chunks dropped", d)
			}
			checkOrder(t, readWire(t, srv, i-1, nil), before, true)
		})
	}
}

// A control message queued before a chunk is complete keeps the shard from
// writing that chunk: it waits in the ring, and the writer sends the message and
// then the chunk. (Were the shard to write whenever no one held the socket, the
// chunk would leave first.)
func TestDirectWriteWaitsForControl(t *testing.T) {
	s, srv := directPair(t, false)
	s.lazyWriter = false // a writer for the whole call, started below
	chunk(s, 0)
	if s.ringLen != 0 || s.c.stats.MessagesOut.Load() != 1 {
		t.Fatalf("chunk 0 not written by the shard (ring %d, sent %d)", s.ringLen, s.c.stats.MessagesOut.Load())
	}
	s.send([]byte("C:0")) // the writer is not running: it stays queued
	chunk(s, 1)
	if s.ringLen != 1 {
		t.Fatalf("chunk 1 was written although a control message was queued before it (ring %d)", s.ringLen)
	}
	s.writerStarted = s.spawn(s.writer)
	checkOrder(t, readWire(t, srv, 1, nil), []int{1}, true)
}

// The shard, a goroutine queueing control messages and the writer all at once
// (plain and TLS), the shard kept at most 8 chunks ahead of what the server has
// read (so the ring never overflows): every chunk arrives, in order, and every
// control message ahead of the chunks begun after it was queued.
func TestDirectWriteOrderUnderControl(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			s, srv := directPair(t, tlsOn)
			_ = srv.SetReadDeadline(time.Now().Add(time.Minute)) // a failure does not hang the test
			const chunks, ctrls = 3000, 300
			quit := make(chan struct{})
			t.Cleanup(func() { close(quit) })
			credit := make(chan struct{}, 8)
			for range cap(credit) {
				credit <- struct{}{}
			}
			var begun atomic.Int64
			before := make([]int, ctrls)
			ctrlGo, done := make(chan struct{}, ctrls), make(chan struct{})
			go func() { // the provider's side of the session: tool results, keypad entries
				defer close(done)
				for i := range ctrls {
					select {
					case <-ctrlGo:
					case <-quit:
						return
					}
					s.send([]byte("C:" + strconv.Itoa(i)))
					before[i] = int(begun.Load())
				}
			}()
			go func() { // the shard
				for i := range chunks {
					select {
					case <-credit:
					case <-quit:
						return
					}
					begun.Add(1)
					chunk(s, i)
					if i%10 == 0 {
						ctrlGo <- struct{}{}
					}
				}
				select {
				case <-done:
				case <-quit:
					return
				}
				chunk(s, chunks) // after every control message: the read ends on it
			}()
			msgs := readWire(t, srv, chunks, credit)
			<-done
			got := checkOrder(t, msgs, before, true)
			t.Logf("%d chunks read, %d dropped", len(got), s.audioDrop.Load())
		})
	}
}

// A lazy writer runs only while there is something for it: none while the shard
// writes every chunk and the reader its control messages (a pong) itself; one
// when a message finds the socket being written (here: writeMu held by the test),
// gone again once it has written it and the chunk queued behind it; then the
// shard writes again.
func TestLazyWriterEnds(t *testing.T) {
	s, srv := directPair(t, false)
	for i := range 5 {
		chunk(s, i)
	}
	s.send([]byte("C:0"))
	if s.wrun.Load() || s.c.stats.MessagesOut.Load() != 6 {
		t.Fatalf("5 chunks and a control message: writer running %v, %d written directly", s.wrun.Load(), s.c.stats.MessagesOut.Load())
	}
	checkOrder(t, append(readWire(t, srv, 4, nil), readCtrl(t, srv)), []int{5}, true)

	s.writeMu.Lock() // a write under way
	s.send([]byte("C:1"))
	if !s.wrun.Load() {
		t.Fatal("no writer started for a control message that could not be written at once")
	}
	chunk(s, 5)
	s.writeMu.Unlock()
	got := readWire(t, srv, 5, nil)
	if len(got) != 2 || !got[0].ctrl || got[0].i != 1 || got[1].ctrl || got[1].i != 5 {
		t.Fatalf("read %v, want control message 1 then chunk 5", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.wrun.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the writer still runs 10 s after it wrote all there was")
		}
		runtime.Gosched()
	}
	n := s.c.stats.MessagesOut.Load()
	chunk(s, 6)
	if s.wrun.Load() || s.c.stats.MessagesOut.Load() != n+1 {
		t.Fatalf("chunk 6: writer running %v, %d written directly", s.wrun.Load(), s.c.stats.MessagesOut.Load()-n)
	}
	checkOrder(t, readWire(t, srv, 6, nil), nil, false)
}

// readCtrl reads one control message.
func readCtrl(t *testing.T, ws *websocket.Conn) wireMsg {
	t.Helper()
	_, m, err := ws.ReadMessage()
	if err != nil || !strings.HasPrefix(string(m), "C:") {
		t.Fatalf("want a control message, got %q (%v)", m, err)
	}
	i, _ := strconv.Atoi(string(m[2:]))
	return wireMsg{ctrl: true, i: i}
}

// TestDirectWriteAtTickEnd: a chunk that a playout on a wheel shard completes
// (media.Frame.Shard set) is written at the end of the shard's tick, after the
// tick's other timers (the playouts after it, and the pacers, do not wait for
// the write), not from the playout; a control message sent in between goes
// out ahead of it, as it did when the writer wrote everything. With
// CXCO_DEFER_WRITE=0's order the playout writes it itself, and the test sees
// that. Deterministic: a Manual clock.
func TestDirectWriteAtTickEnd(t *testing.T) {
	for _, deferred := range []bool{true, false} {
		t.Run(fmt.Sprintf("deferred=%v", deferred), func(t *testing.T) {
			old := deferWrites
			deferWrites = deferred
			defer func() { deferWrites = old }()
			s, srv := directPair(t, false)
			_ = srv.SetReadDeadline(time.Now().Add(time.Minute))
			m := clock.NewManual(time.Now())
			w := clock.New(clock.Options{Clock: m, Shards: 1})
			w.Start()
			defer w.Stop()
			sh := w.Shard()
			var playout, next clock.Timer
			var ringDuring int
			var sentDuring int64
			sh.Init(&playout, func(time.Time) {
				s.OnAudio(media.Frame{Audio: make([]byte, 160), Shard: sh}) // chunk 0
			})
			sh.Init(&next, func(time.Time) {
				s.audioMu.Lock()
				ringDuring = s.ringLen
				s.audioMu.Unlock()
				sentDuring = s.c.stats.MessagesOut.Load()
				s.send([]byte("C:0"))
			})
			at := m.Now().Add(time.Millisecond)
			playout.Reset(at)
			next.Reset(at)
			m.Advance(time.Millisecond)
			got := readWire(t, srv, 0, nil) // up to chunk 0
			if len(got) == 1 {              // and the control message after it
				_, msg, err := srv.ReadMessage()
				if err != nil {
					t.Fatal(err)
				}
				i, _ := strconv.Atoi(strings.TrimPrefix(string(msg), "C:"))
				got = append(got, wireMsg{ctrl: strings.HasPrefix(string(msg), "C:"), i: i})
			}
			var order []string
			for _, g := range got {
				if g.ctrl {
					order = append(order, "C"+strconv.Itoa(g.i))
				} else {
					order = append(order, "A"+strconv.Itoa(g.i))
				}
			}
			want, ring, sent := "[C0 A0]", 1, int64(0)
			if !deferred {
				want, ring, sent = "[A0 C0]", 0, 1
			}
			if ringDuring != ring || sentDuring != sent {
				t.Errorf("during the tick after the playout: ring %d, sent %d; want %d, %d", ringDuring, sentDuring, ring, sent)
			}
			if fmt.Sprint(order) != want {
				t.Errorf("the provider read %v, want %s", order, want)
			}
			s.audioMu.Lock()
			defer s.audioMu.Unlock()
			if s.ringLen != 0 {
				t.Errorf("%d chunks left in the ring after the tick", s.ringLen)
			}
		})
	}
}
