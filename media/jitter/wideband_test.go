package jitter

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
)

// TestWidebandPCM runs 16 kHz PCM (what a G.722 or Opus call decodes to)
// through a buffer at SampleRate 16000: 20 ms packets with up to 40 ms of
// jitter, reordered, one in 50 lost. Every frame is 320 samples, due 20 ms
// after the one before; the tone comes out at its frequency and level, and
// the losses are concealed.
func TestWidebandPCM(t *testing.T) {
	const rate, frame = 16000, 320
	b := New(Options[int16]{Codec: PCM{}, SampleRate: rate})
	tone := audiotest.Sine(rate, 1000, -12, 4*time.Second)
	rng := rand.New(rand.NewPCG(7, 8))
	var s []struct {
		at  time.Duration
		pkt Packet[int16]
	}
	lost := 0
	for i := 0; i*frame < len(tone); i++ {
		if i%50 == 25 {
			lost++
			continue
		}
		send := time.Duration((i+1)*frame) * time.Second / rate
		s = append(s, struct {
			at  time.Duration
			pkt Packet[int16]
		}{send + time.Duration(rng.IntN(40))*time.Millisecond,
			Packet[int16]{SSRC: 9, Sequence: uint16(1000 + i), Timestamp: uint32(5000 + i*frame), Payload: tone[i*frame : (i+1)*frame]}})
	}
	slices.SortStableFunc(s, func(a, c struct {
		at  time.Duration
		pkt Packet[int16]
	}) int {
		return int(a.at - c.at)
	})
	var out []int16
	var dst [frame]int16
	var last time.Time
	i := 0
	for {
		due, ok := b.NextDue()
		if i < len(s) && (!ok || !t0.Add(s[i].at).After(due)) {
			pk := s[i].pkt
			pk.Arrival = t0.Add(s[i].at)
			b.Push(pk)
			i++
			continue
		}
		if !ok || due.Sub(t0) > 4*time.Second {
			break
		}
		f, ok := b.Pop(due, dst[:])
		if !ok {
			continue
		}
		if !last.IsZero() && f.Due.Before(last) {
			t.Fatalf("frame due %v after the previous", f.Due.Sub(last))
		}
		last = f.Due
		out = append(out, dst[:]...)
	}
	st := b.Stats()
	if st.Concealed < uint64(lost) {
		t.Errorf("%d frames concealed, %d packets lost", st.Concealed, lost)
	}
	if st.MaxDepth > 60*time.Millisecond {
		t.Errorf("depth reached %v for 40 ms of jitter", st.MaxDepth)
	}
	body := out[len(out)/4:]
	if f := audiotest.DominantFrequency(body, rate); math.Abs(f-1000) > 10 {
		t.Errorf("frequency %.0f Hz", f)
	}
	if l, want := audiotest.ToneLevelDBFS(body, rate, 1000), audiotest.ToneLevelDBFS(tone, rate, 1000); math.Abs(l-want) > 1 {
		t.Errorf("level %.1f dBFS, want %.1f", l, want)
	}
	t.Logf("%d frames, %d concealed, depth max %v, %v inserted, %v skipped", st.Frames, st.Concealed, st.MaxDepth, st.Inserted, st.Skipped)
}

// TestWidebandSizes: at 16 kHz a frame is 320 samples, a packet up to 120 ms
// (1920 samples) is taken, a longer one is not, and a short dst is refused.
func TestWidebandSizes(t *testing.T) {
	b := New(Options[int16]{Codec: PCM{}, SampleRate: 16000})
	if r := b.Push(Packet[int16]{Arrival: t0, Payload: make([]int16, 1921)}); r != Invalid {
		t.Errorf("1921 samples: %v", r)
	}
	if r := b.Push(Packet[int16]{Arrival: t0, Payload: make([]int16, 1920)}); r != Resynced {
		t.Errorf("1920 samples: %v", r)
	}
	due, _ := b.NextDue()
	var small [160]int16
	if _, ok := b.Pop(due, small[:]); ok {
		t.Error("popped into 160 samples")
	}
	var dst [320]int16
	if _, ok := b.Pop(due, dst[:]); !ok {
		t.Error("nothing popped at the due time")
	}
}
