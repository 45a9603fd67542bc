package opus

import (
	"math"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
)

func mustLoad(t testing.TB) {
	t.Helper()
	if err := Load(); err != nil {
		t.Fatalf("%v: the tests need libopus0 (deploy/test.sh installs it)", err)
	}
}

// TestTones codes tones of the wideband range through encoder and decoder,
// 20 ms at a time, and measures them: same frequency, level within 1 dB.
func TestTones(t *testing.T) {
	mustLoad(t)
	t.Logf("%s", Version())
	for _, freq := range []float64{300, 1000, 3000, 6000} {
		t.Run(time.Duration(freq).String(), func(t *testing.T) {
			enc, err := NewEncoder(Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			dec, err := NewDecoder()
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			in := audiotest.Sine(SampleRate, freq, -12, time.Second)
			out := make([]int16, 0, len(in))
			for i := 0; i < len(in); i += 320 {
				pkt, err := enc.Encode(in[i : i+320])
				if err != nil {
					t.Fatal(err)
				}
				pcm, err := dec.Decode(pkt, false, 0)
				if err != nil || len(pcm) != 320 {
					t.Fatalf("decoded %d samples (%v), want 320", len(pcm), err)
				}
				out = append(out, pcm...)
			}
			tail := out[4000:]
			if f := audiotest.DominantFrequency(tail, SampleRate); math.Abs(f-freq) > 20 {
				t.Errorf("frequency %.0f Hz, want %.0f", f, freq)
			}
			want := audiotest.ToneLevelDBFS(in, SampleRate, freq)
			if l := audiotest.ToneLevelDBFS(tail, SampleRate, freq); math.Abs(l-want) > 1 {
				t.Errorf("level %.2f dBFS, want %.2f", l, want)
			}
		})
	}
}

// TestConcealAndFEC: a lost packet is concealed (nil packet) or recovered
// from the next one's in-band FEC, with the length asked for.
func TestConcealAndFEC(t *testing.T) {
	mustLoad(t)
	enc, err := NewEncoder(Options{FEC: true, LossPercent: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	dec, _ := NewDecoder()
	defer dec.Close()
	in := audiotest.Sine(SampleRate, 500, -12, 200*time.Millisecond)
	for i := 0; i < len(in); i += 320 {
		pkt, _ := enc.Encode(in[i : i+320])
		if i == 320*5 {
			if pcm, err := dec.Decode(nil, false, 320); err != nil || len(pcm) != 320 {
				t.Fatalf("conceal: %d, %v", len(pcm), err)
			}
			continue
		}
		if i == 320*6 {
			if pcm, err := dec.Decode(pkt, true, 320); err != nil || len(pcm) != 320 {
				t.Fatalf("FEC: %d, %v", len(pcm), err)
			}
		}
		if _, err := dec.Decode(pkt, false, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadInput(t *testing.T) {
	mustLoad(t)
	dec, _ := NewDecoder()
	// A TOC byte that says code 3 with no frame count: invalid (RFC 6716 §3.2.5).
	if _, err := dec.Decode([]byte{0x03}, false, 0); err == nil {
		t.Error("decoded an invalid packet")
	}
	if _, err := dec.Decode(make([]byte, 10000), false, 0); err == nil {
		t.Error("decoded an oversized packet")
	}
	dec.Close()
	dec.Close()
	if _, err := dec.Decode([]byte{0xf8, 0xff, 0xfe}, false, 0); err != ErrClosed {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestNoAllocs(t *testing.T) {
	mustLoad(t)
	enc, _ := NewEncoder(Options{})
	defer enc.Close()
	dec, _ := NewDecoder()
	defer dec.Close()
	in := audiotest.Sine(SampleRate, 1000, -12, 20*time.Millisecond)
	if n := testing.AllocsPerRun(200, func() {
		pkt, _ := enc.Encode(in)
		_, _ = dec.Decode(pkt, false, 0)
	}); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}

func BenchmarkEncode20ms(b *testing.B) {
	mustLoad(b)
	enc, _ := NewEncoder(Options{})
	defer enc.Close()
	in := audiotest.Sine(SampleRate, 1000, -12, 20*time.Millisecond)
	for b.Loop() {
		_, _ = enc.Encode(in)
	}
}

func BenchmarkDecode20ms(b *testing.B) {
	mustLoad(b)
	enc, _ := NewEncoder(Options{})
	defer enc.Close()
	dec, _ := NewDecoder()
	defer dec.Close()
	in := audiotest.Sine(SampleRate, 1000, -12, 20*time.Millisecond)
	pkt, _ := enc.Encode(in)
	pkt = append([]byte(nil), pkt...)
	for b.Loop() {
		_, _ = dec.Decode(pkt, false, 0)
	}
}
