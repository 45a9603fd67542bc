package media

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/media/clock"
	"github.com/pion/rtp"
)

// orderLog records, in the order they happen on the shard, the pacers' sends,
// the playouts' frames handed to the consumer and the work those defer, each
// with the manual clock's tick.
type orderLog struct {
	mu  sync.Mutex
	m   *clock.Manual
	evs []orderEv
}

type orderEv struct {
	at   time.Time
	kind string // "send", "sink", "deferred"
	i    int
}

func (l *orderLog) add(kind string, i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, orderEv{l.m.Now(), kind, i})
}

func (l *orderLog) take() []orderEv {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := l.evs
	l.evs = nil
	return evs
}

// logTransport is a Transport whose writes are logged as stream i's sends.
type logTransport struct {
	*chanTransport
	log *orderLog
	i   int
}

func (t *logTransport) WriteRTP(pkt []byte) error {
	t.log.add("send", t.i)
	return nil
}

// TestPacerFirstInItsTick: on one shard, the pacers due in a tick send before
// the playouts due in the same tick hand their frames over (the bridge's
// websocket writes hang off those), however the timers were set, and the work
// a playout defers (Frame.Shard.Defer: the bridge's direct write) runs after
// both. With CXCO_PACE_FIRST=0's slot order (as before InitFirst), a pacer set
// after the playouts of its tick (a Play into an empty queue) waits for all
// of them, and the test sees it. Deterministic: a Manual clock, packets
// handed to the streams directly.
func TestPacerFirstInItsTick(t *testing.T) {
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first=%v", first), func(t *testing.T) {
			old := paceFirst
			paceFirst = first
			defer func() { paceFirst = old }()
			late := pacerOrder(t)
			if first && late > 0 {
				t.Fatalf("in %d ticks a pacer sent after a playout of its tick", late)
			}
			if !first && late == 0 {
				t.Fatal("in slot order no pacer set after the playouts waited for them: the test does not see the order")
			}
		})
	}
}

// pacerOrder runs 4 streams whose pacers and playouts share their ticks and
// returns in how many of those a pacer sent after a playout.
func pacerOrder(t *testing.T) (late int) {
	w, m := manualWheel(t)
	log := &orderLog{m: m}
	const n = 4
	streams := make([]*Stream, n)
	for i := range n {
		tr := &logTransport{chanTransport: newChanTransport(false), log: log, i: i}
		s, err := NewStreamOn(tr, Options{Wheel: w})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		var task clock.Task
		task.Init(func() { log.add("deferred", i) })
		c := Consumer{Format: FormatULaw8k, Sink: func(f Frame) {
			log.add("sink", i)
			if f.Shard == nil {
				t.Error("a frame handed over on a shard without its Shard")
				return
			}
			f.Shard.Defer(&task)
		}}
		if err := s.Start(webrtcNegotiated(), c); err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	raw := make([]byte, 12+160)
	raw[0], raw[1] = 0x80, 0
	var pkt rtp.Packet
	seq := 0
	step := func(d time.Duration) { // every stream's next packet, then d
		for i, s := range streams {
			binary.BigEndian.PutUint16(raw[2:], uint16(seq))
			binary.BigEndian.PutUint32(raw[4:], uint32(seq*160))
			binary.BigEndian.PutUint32(raw[8:], uint32(100+i))
			s.handleRTP(w.Now(), netipZero, raw, &pkt)
		}
		seq++
		m.Advance(d)
	}
	for range 10 {
		step(20 * time.Millisecond)
	}
	// The playouts' phase on the 20 ms grid, from the last frames handed over.
	var phase time.Duration = -1
	for _, e := range log.take() {
		if e.kind == "sink" {
			phase = e.at.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) % (20 * time.Millisecond)
		}
	}
	if phase < 0 {
		t.Fatal("no frame handed over in 200 ms")
	}
	// Kick every pacer (audio into an empty queue goes out at the next tick)
	// one tick before a playout tick: from then on they share their ticks, the
	// pacers' timers set after the playouts'.
	now := m.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) % (20 * time.Millisecond)
	wait := (phase - time.Millisecond - now + 40*time.Millisecond) % (20 * time.Millisecond)
	m.Advance(wait)
	audio := make([]byte, 160*50)
	for _, s := range streams {
		if err := s.Play(audio); err != nil {
			t.Fatal(err)
		}
	}
	m.Advance(time.Millisecond)
	log.take()
	for range 10 {
		step(20 * time.Millisecond)
	}
	byTick := map[time.Time][]orderEv{}
	var ticks []time.Time
	for _, e := range log.take() {
		if byTick[e.at] == nil {
			ticks = append(ticks, e.at)
		}
		byTick[e.at] = append(byTick[e.at], e)
	}
	shared := 0
	for _, at := range ticks {
		evs := byTick[at]
		kinds := ""
		for _, e := range evs {
			kinds += fmt.Sprintf(" %s%d", e.kind, e.i)
		}
		count := map[string]int{}
		last := map[string]int{}
		firstAt := map[string]int{}
		for j, e := range evs {
			if count[e.kind] == 0 {
				firstAt[e.kind] = j
			}
			count[e.kind]++
			last[e.kind] = j
		}
		if count["sink"] != count["deferred"] {
			t.Fatalf("tick %v: %d frames handed over, %d deferred tasks run:%s", at, count["sink"], count["deferred"], kinds)
		}
		if count["sink"] > 0 && count["deferred"] > 0 && firstAt["deferred"] < last["sink"] {
			t.Fatalf("tick %v: deferred work ran before the tick's last playout:%s", at, kinds)
		}
		if count["send"] > 0 && count["deferred"] > 0 && firstAt["deferred"] < last["send"] {
			t.Fatalf("tick %v: deferred work ran before the tick's last send:%s", at, kinds)
		}
		if count["send"] == 0 || count["sink"] == 0 {
			continue
		}
		shared++
		if last["send"] > firstAt["sink"] {
			t.Logf("tick %v: a pacer sent after a playout of its tick:%s", at, kinds)
			late++
		}
	}
	if shared < 5 {
		t.Fatalf("%d ticks with both sends and playouts, want every 20 ms (the setup did not align them)", shared)
	}
	return late
}
