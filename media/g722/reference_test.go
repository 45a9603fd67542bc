package g722

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
)

// spandsp is the G.722 codec of libspandsp (Debian's libspandsp2, which
// baresip's g722 module uses): a second implementation, written from the same
// standard and checked by its authors against the ITU-T test vectors, that our
// codec must match bit for bit. It is loaded at run time, so the test needs
// only the shared library.
type spandsp struct {
	encInit func(s unsafe.Pointer, rate, options int32) unsafe.Pointer
	encode  func(s unsafe.Pointer, dst *byte, src *int16, n int32) int32
	decInit func(s unsafe.Pointer, rate, options int32) unsafe.Pointer
	decode  func(s unsafe.Pointer, dst *int16, src *byte, n int32) int32
}

func loadSpandsp(t *testing.T) *spandsp {
	t.Helper()
	lib, err := purego.Dlopen("libspandsp.so.2", purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Fatalf("libspandsp.so.2 (the reference G.722): %v; install it with apt-get install libspandsp2", err)
	}
	var s spandsp
	purego.RegisterLibFunc(&s.encInit, lib, "g722_encode_init")
	purego.RegisterLibFunc(&s.encode, lib, "g722_encode")
	purego.RegisterLibFunc(&s.decInit, lib, "g722_decode_init")
	purego.RegisterLibFunc(&s.decode, lib, "g722_decode")
	return &s
}

// signals the codecs are compared on: speech-like and hard cases for the
// adaptation (silence, full-scale square waves, noise, steps).
func signals() map[string][]int16 {
	const n = 16000 * 2
	sig := map[string][]int16{}
	mk := func(name string, f func(i int) float64) {
		s := make([]int16, n)
		for i := range s {
			v := f(i)
			s[i] = int16(max(min(v, 32767), -32768))
		}
		sig[name] = s
	}
	r := rand.New(rand.NewPCG(1, 2))
	mk("silence", func(int) float64 { return 0 })
	mk("tone 1 kHz -6 dBFS", func(i int) float64 { return 16384 * math.Sin(2*math.Pi*1000*float64(i)/16000) })
	mk("tone 6 kHz (high band)", func(i int) float64 { return 12000 * math.Sin(2*math.Pi*6000*float64(i)/16000) })
	mk("sweep 50 Hz-7.9 kHz", func(i int) float64 {
		t := float64(i) / 16000
		return 20000 * math.Sin(2*math.Pi*(50*t+7850/4*t*t))
	})
	mk("full-scale square 440 Hz", func(i int) float64 {
		if (i/18)%2 == 0 {
			return 32767
		}
		return -32768
	})
	mk("white noise", func(int) float64 { return r.NormFloat64() * 8000 })
	mk("loud noise (clipping)", func(int) float64 { return r.NormFloat64() * 40000 })
	mk("steps", func(i int) float64 { return float64((i/800)%7-3) * 9000 })
	return sig
}

// TestBitExactWithSpandsp compares encoder and decoder with libspandsp on
// several signals, in 20 ms frames as a call feeds them.
func TestBitExactWithSpandsp(t *testing.T) {
	ref := loadSpandsp(t)
	for name, pcm := range signals() {
		t.Run(name, func(t *testing.T) {
			// Encoder: same bytes.
			es := ref.encInit(nil, 64000, 0)
			want := make([]byte, len(pcm)/2)
			if got := ref.encode(es, &want[0], &pcm[0], int32(len(pcm))); int(got) != len(want) {
				t.Fatalf("spandsp encoded %d bytes, want %d", got, len(want))
			}
			enc := NewEncoder()
			got := make([]byte, len(pcm)/2)
			// in 20 ms frames, as a call does
			for i := 0; i < len(pcm); i += 320 {
				enc.Encode(got[i/2:], pcm[i:i+320])
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("encoder differs at byte %d: %#02x, spandsp %#02x", i, got[i], want[i])
				}
			}
			// Decoder: same samples, from the encoded stream and from random bytes.
			for _, stream := range [][]byte{want, randomBytes(len(want))} {
				ds := ref.decInit(nil, 64000, 0)
				wantPCM := make([]int16, 2*len(stream))
				if n := ref.decode(ds, &wantPCM[0], &stream[0], int32(len(stream))); int(n) != len(wantPCM) {
					t.Fatalf("spandsp decoded %d samples, want %d", n, len(wantPCM))
				}
				dec := NewDecoder()
				gotPCM := make([]int16, 2*len(stream))
				for i := 0; i < len(stream); i += 160 {
					dec.Decode(gotPCM[2*i:], stream[i:i+160])
				}
				for i := range wantPCM {
					// spandsp lets an overflowing QMF output wrap around (a cast
					// to int16); we saturate it, as ffmpeg does: a full-scale
					// click instead of a sign flip. Only there may they differ.
					rail := gotPCM[i] == 32767 || gotPCM[i] == -32768
					if gotPCM[i] != wantPCM[i] && !rail {
						t.Fatalf("decoder differs at sample %d: %d, spandsp %d", i, gotPCM[i], wantPCM[i])
					}
				}
			}
		})
	}
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
