//go:build linux

package media

import (
	"testing"
	"time"

	"github.com/cxco/gateway/media/clock"
	"github.com/pion/rtp"
)

// A stream on a ticking wheel is read by its own shard, with no reader
// goroutine: its packets are read though the shard has no timer pending (the
// shard keeps ticking while it has sockets), and its last stream's Close takes
// the shard's set away.
func TestTickReads(t *testing.T) {
	if !tickReads {
		t.Skip("CXCO_MEDIA_TICK_READS=0")
	}
	w := clock.New(clock.Options{Shards: 1})
	w.Start()
	defer w.Stop()
	defer leakCheck(t)()
	s, ph, digits := digitStream(t, w)
	defer s.Close()
	if s.polled == nil || s.polled.tick == nil || s.polled.slot != nil {
		t.Fatalf("the stream is not read by its shard: %+v", s.polled)
	}
	tickSlotsMu.Lock()
	ts := tickSlots[s.shard]
	tickSlotsMu.Unlock()
	if ts == nil || ts.socks.len() != 2 {
		t.Fatal("the shard holds no set with the stream's two sockets")
	}
	// No timer pending on the shard: only the shard's reads can hand the digit on.
	s.paceTimer.StopWait()
	s.rtcpTimer.StopWait()
	s.playTimer.StopWait()
	ph.send(t, s.LocalAddr(), digitEvent(3))
	select {
	case d := <-digits:
		if d.Digit != '3' {
			t.Fatalf("digit %q, want 3", d.Digit)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no digit: the idle shard did not read its socket")
	}
	s.Close()
	tickSlotsMu.Lock()
	ts = tickSlots[s.shard]
	tickSlotsMu.Unlock()
	if ts != nil {
		t.Fatalf("the shard still holds a set (%d sockets) after its last stream closed", ts.socks.len())
	}
}

// On a Manual clock (no shard goroutine) a stream is read by the shared
// readers' goroutines.
func TestTickReadsManualClock(t *testing.T) {
	w := clock.New(clock.Options{Clock: clock.NewManual(time.Now())})
	w.Start()
	defer w.Stop()
	defer leakCheck(t)()
	s, ph, digits := digitStream(t, w)
	defer s.Close()
	if s.polled == nil || s.polled.slot == nil {
		t.Fatalf("a stream on a Manual clock is not read by a shared reader: %+v", s.polled)
	}
	ph.send(t, s.LocalAddr(), digitEvent(4))
	select {
	case <-digits:
	case <-time.After(10 * time.Second):
		t.Fatal("no digit")
	}
}

// A frame due without its packet has the playout read the stream's socket
// (readLate): with the shard's tick reads taken away after the first packet,
// the packets queued on the socket are still all read, by the playouts, and
// none is late.
func TestLateRead(t *testing.T) {
	if !tickReads || !lateReads {
		t.Skip("CXCO_MEDIA_TICK_READS=0 or CXCO_MEDIA_LATE_READ=0")
	}
	w := clock.New(clock.Options{Shards: 1})
	w.Start()
	defer w.Stop()
	defer leakCheck(t)()
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ph := newPhone(t)
	if err := s.Start(negotiated("PCMU", ph.addr()), Consumer{}); err != nil {
		t.Fatal(err)
	}
	pkt := func(i int) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: 9},
			Payload: make([]byte, 160)}
	}
	ph.send(t, s.LocalAddr(), pkt(1))
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().PacketsReceived != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first packet was not read")
		}
		time.Sleep(time.Millisecond) // polling a counter, not synchronising
	}
	s.shard.OnTick(nil) // the shard stops reading at its ticks; its timers keep it going
	const n = 12
	for i := 2; i <= n; i++ {
		ph.send(t, s.LocalAddr(), pkt(i))
	}
	for s.Stats().PacketsReceived != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d packets read", s.Stats().PacketsReceived, n)
		}
		time.Sleep(time.Millisecond) // polling a counter, not synchronising
	}
	if st := s.Stats(); st.Late != 0 {
		t.Fatalf("%d packets late", st.Late)
	}
}

// digitStream is a started PCMU stream on w with a phone to send it RTP and
// the digits it hands on; the caller closes it (before its leak check runs).
func digitStream(t *testing.T, w *clock.Wheel) (*Stream, *phone, chan Digit) {
	t.Helper()
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	ph := newPhone(t)
	digits := make(chan Digit, 4)
	if err := s.Start(negotiated("PCMU", ph.addr()), Consumer{OnDigit: func(d Digit) { digits <- d }}); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s, ph, digits
}
