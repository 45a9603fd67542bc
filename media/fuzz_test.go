package media

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// FuzzPacketInput feeds arbitrary datagrams to a started stream's RTP and
// RTCP handlers, from two sources, interleaved with playout and pacing on a
// manual clock. The stream must not panic and its counters must stay
// consistent.
func FuzzPacketInput(f *testing.F) {
	audio := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 65535, Timestamp: 0xffffff00, SSRC: 5}, Payload: make([]byte, 160)}
	a, _ := audio.Marshal()
	dtmf := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 1, Timestamp: 800, SSRC: 5}, Payload: []byte{11, 0x8a, 0x08, 0xc0}}
	d, _ := dtmf.Marshal()
	rr := []byte{0x81, 0xc9, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2, 0x10, 0, 0, 5, 0, 0, 0x10, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0}
	f.Add(a, d, rr, uint8(0))
	f.Add(d, a, []byte{0x81, 0xcb, 0, 1, 0, 0, 0, 1}, uint8(3))
	f.Add([]byte{0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0}, []byte{}, []byte{0x80}, uint8(255))
	f.Fuzz(func(t *testing.T, p1, p2, rtcpPkt []byte, ops uint8) {
		w, m := manualWheel(t)
		s, err := NewStream(testPool(t), loopback, Options{Wheel: w, RTCPInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		remote := netip.MustParseAddrPort("127.0.0.1:9")
		other := netip.MustParseAddrPort("127.0.0.2:9")
		if err := s.Start(negotiated("PCMU", remote), Echo(s, FormatPCM16k)); err != nil {
			t.Fatal(err)
		}
		var pkt rtp.Packet
		for i := range 8 {
			from := remote
			if ops>>i&1 == 1 {
				from = other
			}
			s.handleRTP(w.Now(), from, append([]byte(nil), p1...), &pkt)
			s.handleRTP(w.Now(), from, append([]byte(nil), p2...), &pkt)
			s.handleRTCP(w.Now(), remote, rtcpPkt)
			m.Advance(time.Duration(ops%40+1) * time.Millisecond)
		}
		st := s.Stats()
		if st.Late+st.Duplicates > st.PacketsReceived {
			t.Fatalf("late %d + duplicates %d > received %d", st.Late, st.Duplicates, st.PacketsReceived)
		}
	})
}
