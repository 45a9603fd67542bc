package media

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/rtp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// leakCheck records the goroutine count and returns a function that fails
// the test if more goroutines are left at the end (waiting up to 5 s for
// exiting ones to finish).
func leakCheck(t testing.TB) func() {
	before := runtime.NumGoroutine()
	return func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutine leak: %d before, %d after\n%s", before, n, buf)
			}
			runtime.Gosched()
			time.Sleep(time.Millisecond) // polling an exit, not synchronising
		}
	}
}

// chanClosed reports whether c is closed, without waiting.
func chanClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func testPool(t testing.TB) *PortPool {
	p, err := NewPortPool(30000, 39999)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// phone is the far end: a UDP socket on 127.0.0.1.
type phone struct {
	conn *net.UDPConn
	buf  []byte
}

func newPhone(t testing.TB) *phone {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadBuffer(1 << 20)
	return &phone{conn: c, buf: make([]byte, 2048)}
}

func (p *phone) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *phone) send(t testing.TB, to netip.AddrPort, pkt *rtp.Packet) {
	b, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// recv reads one RTP packet, waiting at most d.
func (p *phone) recv(d time.Duration) (*rtp.Packet, bool) {
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := p.conn.ReadFromUDPAddrPort(p.buf)
	if err != nil {
		return nil, false
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(append([]byte(nil), p.buf[:n]...)); err != nil {
		return nil, false
	}
	return &pkt, true
}

func negotiated(codec string, remote netip.AddrPort) sdp.Negotiated {
	c := sdp.PCMU
	if codec == "PCMA" {
		c = sdp.PCMA
	}
	return sdp.Negotiated{Codec: c, DTMF: sdp.Codec{PayloadType: 101, Name: "telephone-event", ClockRate: 8000}, HasDTMF: true,
		Remote: remote, Direction: sdp.SendRecv}
}

// digitEvent is an RFC 4733 telephone-event packet (payload type 101, as
// negotiated gives it) for event (0-9 are the digits): volume 10, 20 ms in.
func digitEvent(event byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 1, Timestamp: 160, SSRC: 9},
		Payload: []byte{event, 0x0a, 0, 160}}
}

// manualWheel is a started wheel on a manual clock.
func manualWheel(t testing.TB) (*clock.Wheel, *clock.Manual) {
	m := clock.NewManual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	w := clock.New(clock.Options{Clock: m, Shards: 1})
	w.Start()
	t.Cleanup(w.Stop)
	return w, m
}

// packetPathAllocFree hands s one 20 ms RTP packet (payload type pt, SSRC 42,
// 160 payload bytes) from from per step, advancing m by 20 ms, and fails the
// test unless a step allocates nothing once 50 steps have warmed it up.
func packetPathAllocFree(t testing.TB, s *Stream, w *clock.Wheel, m *clock.Manual, from netip.AddrPort, pt byte) {
	t.Helper()
	raw := make([]byte, 12+160)
	raw[0], raw[1] = 0x80, pt
	var pkt rtp.Packet
	i := 0
	step := func() {
		binary.BigEndian.PutUint16(raw[2:], uint16(i))
		binary.BigEndian.PutUint32(raw[4:], uint32(i*160))
		binary.BigEndian.PutUint32(raw[8:], 42)
		s.handleRTP(w.Now(), from, raw, &pkt)
		m.Advance(20 * time.Millisecond)
		i++
	}
	for range 50 { // warm up: latch, start the timeline, fill the pools
		step()
	}
	if n := testing.AllocsPerRun(500, step); n != 0 {
		t.Fatalf("%.2f allocations per packet", n)
	}
}

func realWheel(t testing.TB) *clock.Wheel {
	w := clock.New(clock.Options{})
	w.Start()
	t.Cleanup(w.Stop)
	return w
}

func netip_ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

var netipZero netip.AddrPort
