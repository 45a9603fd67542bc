package media

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/quality"
	"github.com/pion/rtp"
)

// impairment is what the network does to the phone's packets on their way to
// the stream.
type impairment struct {
	loss, reorder, dup float64       // probabilities
	jitter             time.Duration // uniform extra delay 0..jitter
	seed               uint64
}

// arrival is one packet reaching the stream: when, and which of the phone's.
type arrival struct {
	at  time.Duration // since the phone's first packet was sent
	seq int           // index of the phone's packet
}

// schedule impairs n packets sent every 20 ms: which are lost, when the others
// (and their duplicates) arrive. It is computed up front from the seed, so a
// run's network is the same whatever the machine is doing.
func (imp impairment) schedule(n int) (arrivals []arrival, dropped, doubled int) {
	rng := rand.New(rand.NewPCG(imp.seed, 7))
	for i := range n {
		sent := time.Duration(i) * 20 * time.Millisecond
		if rng.Float64() < imp.loss {
			dropped++
			continue
		}
		delay := time.Duration(rng.Int64N(int64(imp.jitter) + 1))
		if rng.Float64() < imp.reorder {
			delay += 25 * time.Millisecond // overtaken by the next one or two
		}
		arrivals = append(arrivals, arrival{sent + delay, i})
		if rng.Float64() < imp.dup {
			arrivals = append(arrivals, arrival{sent + delay + time.Duration(rng.Int64N(int64(10*time.Millisecond))), i})
			doubled++
		}
	}
	slices.SortStableFunc(arrivals, func(a, b arrival) int { return int(a.at - b.at) })
	return arrivals, dropped, doubled
}

type echoResult struct {
	sent, echoed []int16
	freq, level  float64 // of the echo's steady state
	sentLevel    float64
	stats        Stats
	dropped      int
	doubled      int
	concealed    int // concealed frames between the first and last frame with received audio
}

// runEcho sends seconds of a 1 kHz tone at -10 dBFS from a phone through an
// impaired network into a stream in echo mode and records what comes back.
// Time is a manual clock: the network's delays, the jitter buffer and the
// pacer all run on it, so what is late or lost is decided by the impairment
// alone, never by how busy the machine is. The stream's RTP goes back to the
// phone over a real socket.
func runEcho(t *testing.T, codec string, format Format, imp impairment, seconds int) echoResult {
	w, m := manualWheel(t)
	defer leakCheck(t)()
	ph := newPhone(t)
	s, err := NewStream(testPool(t), loopback, Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}

	var (
		fmu    sync.Mutex
		frames []bool // concealed flag of each frame handed on
		real   []bool
	)
	echo := Echo(s, format)
	c := Consumer{Format: format, Sink: func(f Frame) {
		fmu.Lock()
		frames = append(frames, f.Concealed)
		real = append(real, !f.Arrival.IsZero())
		fmu.Unlock()
		echo.Sink(f)
	}}
	if err := s.Start(negotiated(codec, ph.addr()), c); err != nil {
		t.Fatal(err)
	}

	// The phone: 20 ms packets of the tone.
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
	packets := make([][]byte, n)
	seq, ts, ssrc := uint16(rand.Uint32()), rand.Uint32(), rand.Uint32()
	for i := range n {
		payload := make([]byte, 160)
		encode(payload, sent[i*160:(i+1)*160])
		decode(sentDecoded[i*160:(i+1)*160], payload)
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq + uint16(i),
			Timestamp: ts + uint32(i*160), SSRC: ssrc, Marker: i == 0}, Payload: payload}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		packets[i] = b
	}
	arrivals, dropped, doubled := imp.schedule(n)

	// Run the network and the stream on the manual clock, a millisecond at a
	// time, until a second after the phone's last packet; collect the stream's
	// packets as it sends them (the pacer sends inside Advance).
	var (
		got     []*rtp.Packet
		scratch rtp.Packet
		next    int
	)
	start := w.Now()
	for at := time.Duration(0); at <= time.Duration(n)*20*time.Millisecond+time.Second; at += time.Millisecond {
		for ; next < len(arrivals) && arrivals[next].at <= at; next++ {
			s.handleRTP(w.Now(), ph.addr(), append([]byte(nil), packets[arrivals[next].seq]...), &scratch)
		}
		m.Advance(start.Add(at + time.Millisecond).Sub(w.Now()))
		for uint64(len(got)) < s.Stats().PacketsSent {
			p, ok := ph.recv(10 * time.Second)
			if !ok {
				t.Fatalf("the stream sent %d packets, the phone got %d", s.Stats().PacketsSent, len(got))
			}
			got = append(got, p)
		}
	}
	st := s.Stats()
	s.Close()

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
	res := echoResult{sent: sentDecoded, echoed: echoed, stats: st, dropped: dropped, doubled: doubled}
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
	t.Logf("%s %s: echo %.1f Hz %.2f dBFS (sent %.2f), %d packets dropped by the network, %d doubled; lost %d, late %d, dup %d, out of order %d, concealed %d (stats %d), jitter %v, depth max %v",
		codec, format, res.freq, res.level, res.sentLevel, dropped, doubled, st.CumulativeLost, st.Late, st.Duplicates, st.OutOfOrder, res.concealed, st.Concealed, st.Jitter, st.JitterDepthMax)
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
				t.Errorf("cumulative lost %d, the network dropped %d", st.CumulativeLost, r.dropped)
			}
			if st.Duplicates != uint64(r.doubled) {
				t.Errorf("duplicates %d, the network doubled %d", st.Duplicates, r.doubled)
			}
			if st.OutOfOrder == 0 {
				t.Error("no packets out of order: the network reordered some")
			}
			// Every lost or late packet is a concealed frame (the network's
			// timing is the schedule's, so this is exact).
			if want := r.dropped + int(st.Late); r.concealed != want {
				t.Errorf("concealed %d frames, want %d (lost %d, late %d)", r.concealed, want, r.dropped, st.Late)
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
			// The loss costs R points: below a clean line's 93.2.
			if q.R >= 90 || q.MOS != quality.MOS(q.R) {
				t.Errorf("R %.1f MOS %.2f for %.1f%% loss", q.R, q.MOS, 100*q.Loss)
			}
			t.Logf("quality: R %.1f, MOS %.2f, loss %.2f%%, burst ratio %.2f, delay %v", q.R, q.MOS, 100*q.Loss, q.BurstR, q.Delay)
		})
	}
}
