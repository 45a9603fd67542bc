package g722

import (
	"math"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
)

// TestTones codes tones across the band, the lower sub-band and the higher
// one alike, and measures them after decoding: same frequency, level within
// 0.5 dB, and a signal-to-noise ratio a wideband codec at 64 kbit/s keeps.
func TestTones(t *testing.T) {
	cases := []struct {
		name  string
		freq  float64
		dBFS  float64
		minSN float64
	}{
		{"300 Hz", 300, -12, 30},
		{"1 kHz", 1000, -6, 30},
		{"3.4 kHz", 3400, -12, 25},
		{"5 kHz (above narrowband)", 5000, -12, 15},
		{"7 kHz", 7000, -12, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := audiotest.Sine(16000, c.freq, c.dBFS, time.Second)
			enc, dec := NewEncoder(), NewDecoder()
			wire := make([]byte, len(in)/2)
			out := make([]int16, len(in))
			for i := 0; i < len(in); i += 320 {
				enc.Encode(wire[i/2:], in[i:i+320])
				dec.Decode(out[i:], wire[i/2:i/2+160])
			}
			tail := out[3200:] // after the adaptation settled
			if f := audiotest.DominantFrequency(tail, 16000); math.Abs(f-c.freq) > 20 {
				t.Errorf("frequency %.0f Hz, want %.0f", f, c.freq)
			}
			want := audiotest.ToneLevelDBFS(in, 16000, c.freq) // RMS: the peak level less 3 dB
			if l := audiotest.ToneLevelDBFS(tail, 16000, c.freq); math.Abs(l-want) > 0.5 {
				t.Errorf("level %.2f dBFS, want %.2f", l, want)
			}
			if sn := audiotest.SNRDB(tail, 16000, c.freq); sn < c.minSN {
				t.Errorf("SNR %.1f dB, want at least %.0f", sn, c.minSN)
			}
		})
	}
}

// TestSilenceStaysQuiet: digital silence in, near silence out, from the
// first frame (a pacer encodes silence between utterances).
func TestSilenceStaysQuiet(t *testing.T) {
	enc, dec := NewEncoder(), NewDecoder()
	var in [320]int16
	var wire [160]byte
	var out [320]int16
	for range 50 {
		enc.Encode(wire[:], in[:])
		dec.Decode(out[:], wire[:])
		for i, v := range out {
			if v > 8 || v < -8 {
				t.Fatalf("sample %d of silence decoded as %d", i, v)
			}
		}
	}
}

func TestNoAllocs(t *testing.T) {
	enc, dec := NewEncoder(), NewDecoder()
	in := audiotest.Sine(16000, 1000, -6, 20*time.Millisecond)
	var wire [160]byte
	var out [320]int16
	if n := testing.AllocsPerRun(100, func() {
		enc.Encode(wire[:], in)
		dec.Decode(out[:], wire[:])
	}); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}

func BenchmarkEncode20ms(b *testing.B) {
	enc := NewEncoder()
	in := audiotest.Sine(16000, 1000, -6, 20*time.Millisecond)
	var wire [160]byte
	for b.Loop() {
		enc.Encode(wire[:], in)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20e6*100, "%cpu/stream")
}

func BenchmarkDecode20ms(b *testing.B) {
	enc, dec := NewEncoder(), NewDecoder()
	in := audiotest.Sine(16000, 1000, -6, 20*time.Millisecond)
	var wire [160]byte
	var out [320]int16
	enc.Encode(wire[:], in)
	for b.Loop() {
		dec.Decode(out[:], wire[:])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20e6*100, "%cpu/stream")
}
