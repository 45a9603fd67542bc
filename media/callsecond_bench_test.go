package media

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/g722"
	"github.com/cxco/gateway/media/opus"
	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// BenchmarkCallSecond is one call's media work per second of call, both
// directions, as the echo line does it: 50 packets in (SRTP decryption, codec
// decode, jitter buffer, playout to the consumer) and 50 out (queue, codec
// encode, SRTP encryption), without the sockets' system calls. The far end's
// packets are made before the timer starts. It reports cpu-ms/call-s from
// the process's CPU time (cpuTime, bench_test.go), not the wall clock, so
// that other load on the machine does not inflate it.
//
//	go test -run '^$' -bench CallSecond -benchtime 3000x ./media/
func BenchmarkCallSecond(b *testing.B) {
	if err := opus.Load(); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		codec sdp.Codec
		srtp  bool
	}{
		{"PCMU", sdp.PCMU, false}, {"PCMU+SRTP", sdp.PCMU, true},
		{"G722", sdp.G722, false}, {"G722+SRTP", sdp.G722, true},
		{"opus", sdp.Opus, false}, {"opus+SRTP", sdp.Opus, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w, m := manualWheel(b)
			s, err := NewStream(testPool(b), loopback, Options{Wheel: w})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			remote := netip.MustParseAddrPort("127.0.0.1:9")
			n := sdp.Negotiated{Codec: tc.codec, Remote: remote, Direction: sdp.SendRecv}
			if tc.srtp {
				n.SRTP = &sdp.SRTP{Suite: sdp.SuiteAES80, Local: key(1), Remote: key(2)}
			}
			format := FormatULaw8k
			if tc.codec.Name != "PCMU" {
				format = FormatPCM16k
			}
			if err := s.Start(n, Echo(s, format)); err != nil {
				b.Fatal(err)
			}
			pkts := farPackets(b, tc.codec, 500)
			if tc.srtp {
				p, _ := profileOf(sdp.SuiteAES80)
				k := key(2)
				enc, _ := srtp.CreateContext(k.MasterKey(), k.MasterSalt(), p)
				for i := range pkts {
					pkts[i], _ = enc.EncryptRTP(nil, pkts[i], nil)
				}
			}
			plain := make([]byte, 1500)
			var pkt rtp.Packet
			var hdr rtp.Header
			i := 0
			step := func() {
				raw := pkts[i%len(pkts)]
				if sc := s.srtpIn.Load(); sc != nil {
					var err error
					if raw, err = sc.rtp.DecryptRTP(plain[:0], raw, &hdr); err != nil {
						b.Fatal(err)
					}
				}
				s.handleRTP(w.Now(), remote, raw, &pkt)
				m.Advance(20 * time.Millisecond)
				i++
			}
			for range 50 {
				step()
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				step()
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/(float64(b.N)/50), "cpu-ms/call-s")
		})
	}
}

// farPackets are n consecutive 20 ms RTP packets of a 1 kHz tone in codec
// (fresh sequence numbers and timestamps: SRTP's replay window sees no
// repeats within a benchmark run shorter than n packets... so n is large).
func farPackets(b *testing.B, codec sdp.Codec, n int) [][]byte {
	n = max(n, b.N+100)
	tone := audiotest.Sine(16000, 1000, -12, 20*time.Millisecond)
	var payload func() []byte
	step := uint32(160)
	switch codec.Name {
	case "PCMU":
		t8 := audiotest.Sine(8000, 1000, -12, 20*time.Millisecond)
		p := make([]byte, 160)
		g711.PCMToULaw(p, t8)
		payload = func() []byte { return p }
	case "G722":
		e := g722.NewEncoder()
		payload = func() []byte { p := make([]byte, 160); e.Encode(p, tone); return p }
	case "opus":
		e, err := opus.NewEncoder(opus.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		payload = func() []byte { p, _ := e.Encode(tone); return append([]byte(nil), p...) }
		step = 960
	}
	out := make([][]byte, n)
	for i := range out {
		p := payload()
		raw := make([]byte, 12+len(p))
		raw[0], raw[1] = 0x80, codec.PayloadType
		binary.BigEndian.PutUint16(raw[2:], uint16(i))
		binary.BigEndian.PutUint32(raw[4:], uint32(i)*step)
		binary.BigEndian.PutUint32(raw[8:], 42)
		copy(raw[12:], p)
		out[i] = raw
	}
	return out
}
