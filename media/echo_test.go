package media

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/quality"
	"github.com/pion/rtp"
)

// impairment is what the relay does to the phone's packets on their way to
// the gateway.
type impairment struct {
	loss, reorder, dup float64       // probabilities
	jitter             time.Duration // uniform extra delay 0..jitter
	seed               uint64
}

// relay sits between the phone and the stream. Packets from the phone are
// impaired and forwarded to the stream from the relay's stream-side
// socket; the stream's RTP (symmetric, so sent back to that socket) is
// forwarded to the phone unchanged.
type relay struct {
	phoneSide, streamSide *net.UDPConn
	imp                   impairment
	target                netip.AddrPort // the stream
	phone                 netip.AddrPort

	mu                          sync.Mutex
	forwarded, dropped, doubled int
	lastDropped                 bool
	wg                          sync.WaitGroup
	timers                      sync.WaitGroup
}

func newRelay(t *testing.T, imp impairment, phone netip.AddrPort) *relay {
	a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return &relay{phoneSide: a, streamSide: b, imp: imp, phone: phone}
}

func (r *relay) phoneAddr() netip.AddrPort { return r.phoneSide.LocalAddr().(*net.UDPAddr).AddrPort() }
func (r *relay) streamAddr() netip.AddrPort {
	return r.streamSide.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (r *relay) start() {
	rng := rand.New(rand.NewPCG(r.imp.seed, 7))
	r.wg.Add(2)
	go func() { // phone -> stream, impaired
		defer r.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := r.phoneSide.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pkt := append([]byte(nil), buf[:n]...)
			r.mu.Lock()
			if rng.Float64() < r.imp.loss {
				r.dropped++
				r.lastDropped = true
				r.mu.Unlock()
				continue
			}
			r.lastDropped = false
			r.forwarded++
			delay := time.Duration(rng.Int64N(int64(r.imp.jitter) + 1))
			if rng.Float64() < r.imp.reorder {
				delay += 25 * time.Millisecond // overtaken by the next one or two
			}
			sends := []time.Duration{delay}
			if rng.Float64() < r.imp.dup {
				sends = append(sends, delay+time.Duration(rng.Int64N(int64(10*time.Millisecond))))
				r.doubled++
			}
			r.mu.Unlock()
			for _, d := range sends {
				r.timers.Add(1)
				time.AfterFunc(d, func() {
					defer r.timers.Done()
					_, _ = r.streamSide.WriteToUDPAddrPort(pkt, r.target)
				})
			}
		}
	}()
	go func() { // stream -> phone
		defer r.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := r.streamSide.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = r.phoneSide.WriteToUDPAddrPort(buf[:n], r.phone)
		}
	}()
}

func (r *relay) close() {
	r.timers.Wait()
	r.phoneSide.Close()
	r.streamSide.Close()
	r.wg.Wait()
}

type echoResult struct {
	sent, echoed []int16
	freq, level  float64 // of the echo's steady state
	sentLevel    float64
	stats        Stats
	dropped      int
	doubled      int
	concealed    int // concealed frames between the first and last frame with received audio
	latencies    []time.Duration
}

// runEcho sends seconds of a 1 kHz tone at -10 dBFS from a phone through
// the relay into a stream in echo mode and records what comes back.
func runEcho(t *testing.T, codec string, format Format, imp impairment, seconds int) echoResult {
	w := realWheel(t)
	defer leakCheck(t)()
	ph := newPhone(t)
	rl := newRelay(t, imp, ph.addr())
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	rl.target = s.LocalAddr()
	if s.LocalAddr().Addr().IsUnspecified() {
		rl.target = netip.AddrPortFrom(loopback, uint16(s.LocalPort()))
	}
	rl.start()

	var (
		fmu    sync.Mutex
		frames []bool // concealed flag of each frame handed on
		real   []bool
		lat    []time.Duration
	)
	echo := Echo(s, format)
	c := Consumer{Format: format, Sink: func(f Frame) {
		fmu.Lock()
		frames = append(frames, f.Concealed)
		real = append(real, !f.Arrival.IsZero())
		if !f.Arrival.IsZero() && !f.Concealed {
			lat = append(lat, time.Since(f.Arrival))
		}
		fmu.Unlock()
		echo.Sink(f)
	}}
	if err := s.Start(negotiated(codec, rl.streamAddr()), c); err != nil {
		t.Fatal(err)
	}

	// The phone: 20 ms packets of the tone, paced by a ticker.
	amp := math.Pow(10, (-10+3.0103)/20)
	n := seconds * 50
	sent := make([]int16, n*160)
	(&audiotest.Tone{Rate: 8000, Freq: 1000, Amplitude: amp}).Fill(sent)
	pt := uint8(0)
	if codec == "PCMA" {
		pt = 8
	}
	encode := func(dst []byte, src []int16) {
		if codec == "PCMA" {
			g711.PCMToALaw(dst, src)
		} else {
			g711.PCMToULaw(dst, src)
		}
	}
	decode := func(dst []int16, src []byte) {
		if codec == "PCMA" {
			g711.ALawToPCM(dst, src)
		} else {
			g711.ULawToPCM(dst, src)
		}
	}
	// What the phone actually sends, after its own G.711 encoding.
	sentDecoded := make([]int16, len(sent))

	recvDone := make(chan []*rtp.Packet)
	go func() {
		var got []*rtp.Packet
		audio, quietAfter := 0, 0
		deadline := time.Now().Add(time.Duration(seconds)*time.Second + 10*time.Second)
		for time.Now().Before(deadline) {
			p, ok := ph.recv(time.Second)
			if !ok {
				continue
			}
			got = append(got, p)
			sil := g711.ULawSilence
			if codec == "PCMA" {
				sil = g711.ALawSilence
			}
			if isSilence(p.Payload, sil) {
				if audio > 0 {
					quietAfter++
				}
			} else {
				audio++
				quietAfter = 0
			}
			if audio > n/2 && quietAfter >= 25 { // the echo is over
				break
			}
		}
		recvDone <- got
	}()

	tick := time.NewTicker(20 * time.Millisecond)
	seq, ts, ssrc := uint16(rand.Uint32()), rand.Uint32(), rand.Uint32()
	payload := make([]byte, 160)
	for i := range n {
		<-tick.C
		encode(payload, sent[i*160:(i+1)*160])
		decode(sentDecoded[i*160:(i+1)*160], payload)
		ph.send(t, rl.phoneAddr(), &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq,
			Timestamp: ts, SSRC: ssrc, Marker: i == 0}, Payload: payload})
		seq++
		ts += 160
	}
	tick.Stop()
	got := <-recvDone
	st := s.Stats()
	s.Close()
	rl.close()

	// Decode the echo in sequence order.
	slices.SortFunc(got, func(a, b *rtp.Packet) int { return int(int16(a.SequenceNumber - b.SequenceNumber)) })
	var echoed []int16
	x := make([]int16, 160)
	for _, p := range got {
		decode(x, p.Payload)
		echoed = append(echoed, x...)
	}
	// Steady state: from 0.5 s after the echo's first audio to 0.3 s
	// before its end.
	first, last := audiotest.LoudSpan(echoed, 160, -40)
	if first < 0 || last-first < 8000 {
		t.Fatalf("echo has %d samples of audio, want about %d", last-first, len(sent))
	}
	steady := echoed[first+4000 : last-2400]
	res := echoResult{sent: sentDecoded, echoed: echoed, stats: st, dropped: rl.dropped, doubled: rl.doubled, latencies: lat}
	res.freq = audiotest.DominantFrequency(steady, 8000)
	res.level = audiotest.ToneLevelDBFS(steady, 8000, 1000)
	res.sentLevel = audiotest.ToneLevelDBFS(sentDecoded[4000:len(sentDecoded)-2400], 8000, 1000)
	fmu.Lock()
	fi, li := slices.Index(real, true), -1
	for i := range real {
		if real[i] {
			li = i
		}
	}
	for i := fi; i >= 0 && i <= li; i++ {
		if frames[i] {
			res.concealed++
		}
	}
	fmu.Unlock()
	t.Logf("%s %s: echo %.1f Hz %.2f dBFS (sent %.2f), %d packets dropped by the relay, %d doubled; lost %d, late %d, dup %d, out of order %d, concealed %d (stats %d), jitter %v, depth max %v",
		codec, format, res.freq, res.level, res.sentLevel, rl.dropped, rl.doubled, st.CumulativeLost, st.Late, st.Duplicates, st.OutOfOrder, res.concealed, st.Concealed, st.Jitter, st.JitterDepthMax)
	return res
}

func TestEchoThroughImpairments(t *testing.T) {
	imp := impairment{loss: 0.02, reorder: 0.02, dup: 0.02, jitter: 20 * time.Millisecond}
	tests := []struct {
		codec  string
		format Format
		seed   uint64
	}{
		// seeds chosen so that each run has losses, duplicates and reordering
		{"PCMU", FormatULaw8k, 1},
		{"PCMA", FormatULaw8k, 11},
		{"PCMU", FormatPCM16k, 3},
		{"PCMA", FormatPCM16k, 13},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %s", tc.codec, tc.format), func(t *testing.T) {
			imp := imp
			imp.seed = tc.seed
			r := runEcho(t, tc.codec, tc.format, imp, 4)
			if r.freq < 995 || r.freq > 1005 {
				t.Errorf("echo frequency %.1f Hz, want 1000±5", r.freq)
			}
			if math.Abs(r.level-r.sentLevel) > 1 {
				t.Errorf("echo level %.2f dBFS, sent %.2f: want within 1 dB", r.level, r.sentLevel)
			}
			st := r.stats
			if st.CumulativeLost != int64(r.dropped) {
				t.Errorf("cumulative lost %d, relay dropped %d", st.CumulativeLost, r.dropped)
			}
			if st.Duplicates != uint64(r.doubled) {
				t.Errorf("duplicates %d, the relay doubled %d", st.Duplicates, r.doubled)
			}
			if st.OutOfOrder == 0 {
				t.Error("no packets out of order: the relay reordered some")
			}
			// Every lost or late packet is a concealed frame, unless the
			// buffer skipped it while shrinking.
			if lo, hi := r.dropped-2, r.dropped+int(st.Late)+2; r.concealed < lo || r.concealed > hi {
				t.Errorf("concealed %d frames, want %d..%d (lost %d, late %d)", r.concealed, lo, hi, r.dropped, st.Late)
			}
			// The same losses, as lost audio in runs and as the E-model's Ppl.
			if st.LossRuns == 0 || st.LossRuns > st.Concealed {
				t.Errorf("%d concealed frames in %d runs", st.Concealed, st.LossRuns)
			}
			q := st.Quality
			want := float64(r.dropped+int(st.Late)) / float64(st.Expected)
			if math.Abs(q.Loss-want) > 1e-9 || q.BurstR < 1 || q.Delay < 40*time.Millisecond || q.Delay > 160*time.Millisecond {
				t.Errorf("quality %+v: loss want %.4f, burst ≥ 1, delay 20 ms + depth", q, want)
			}
			// The loss costs R points (how many depends on the late drops too,
			// which a busy machine adds): below a clean line's 93.2.
			if q.R >= 90 || q.MOS != quality.MOS(q.R) {
				t.Errorf("R %.1f MOS %.2f for %.1f%% loss", q.R, q.MOS, 100*q.Loss)
			}
			t.Logf("quality: R %.1f, MOS %.2f, loss %.2f%%, burst ratio %.2f, delay %v", q.R, q.MOS, 100*q.Loss, q.BurstR, q.Delay)
		})
	}
}
