package g711

import (
	"bytes"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cxco/gateway/media/audiotest"
)

var update = flag.Bool("update", false, "regenerate the golden files in testdata/")

// law bundles one companding law for table-driven tests.
type law struct {
	name      string
	encode    func(int16) byte
	decode    func(byte) int16
	refEncode func(int) byte
	refDecode func(byte) int
	toPCM     func([]int16, []byte) int
	fromPCM   func([]byte, []int16) int
	silence   byte
	ext       string
}

var laws = []law{
	{"ulaw", EncodeULaw, DecodeULaw, linear2ulaw, ulaw2linear, ULawToPCM, PCMToULaw, ULawSilence, ".ulaw"},
	{"alaw", EncodeALaw, DecodeALaw, linear2alaw, alaw2linear, ALawToPCM, PCMToALaw, ALawSilence, ".alaw"},
}

func TestEncodeMatchesSunReference(t *testing.T) {
	for _, l := range laws {
		t.Run(l.name, func(t *testing.T) {
			bad := 0
			for v := math.MinInt16; v <= math.MaxInt16; v++ {
				got, want := l.encode(int16(v)), l.refEncode(v)
				if got != want {
					if bad++; bad <= 10 {
						t.Errorf("encode(%d) = %#02x, reference %#02x", v, got, want)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of 65536 inputs differ from the reference", bad)
			}
		})
	}
}

func TestDecodeMatchesSunReference(t *testing.T) {
	for _, l := range laws {
		t.Run(l.name, func(t *testing.T) {
			for c := range 256 {
				if got, want := int(l.decode(byte(c))), l.refDecode(byte(c)); got != want {
					t.Errorf("decode(%#02x) = %d, reference %d", c, got, want)
				}
			}
		})
	}
}

func TestG191Agreement(t *testing.T) {
	t.Run("decoders are identical", func(t *testing.T) {
		for c := range 256 {
			if got, want := DecodeULaw(byte(c)), g191ULawExpand(byte(c)); got != want {
				t.Errorf("µ-law %#02x: %d, G.191 %d", c, got, want)
			}
			if got, want := DecodeALaw(byte(c)), g191ALawExpand(byte(c)); got != want {
				t.Errorf("A-law %#02x: %d, G.191 %d", c, got, want)
			}
		}
	})
	t.Run("A-law encoder is identical", func(t *testing.T) {
		for v := math.MinInt16; v <= math.MaxInt16; v++ {
			if got, want := EncodeALaw(int16(v)), g191ALawCompress(int16(v)); got != want {
				t.Fatalf("EncodeALaw(%d) = %#02x, G.191 %#02x", v, got, want)
			}
		}
	})
	t.Run("µ-law encoder differs only next to negative decision levels", func(t *testing.T) {
		// For a negative sample x, G.191 takes the 14-bit magnitude as
		// (^x)>>2, the one's complement, and Sun as -(x>>2), which is always
		// one larger. Where that step crosses one of the 127 negative decision
		// levels (4 inputs each) the two choose neighbouring codes, and both
		// codes bracket the input.
		levels := decisionLevels(DecodeULaw)
		diff := 0
		for v := math.MinInt16; v <= math.MaxInt16; v++ {
			got, want := EncodeULaw(int16(v)), g191ULawCompress(int16(v))
			if got == want {
				continue
			}
			diff++
			a, b := int(DecodeULaw(got)), int(DecodeULaw(want))
			lo, hi := min(a, b), max(a, b)
			if v >= 0 || !adjacent(levels, lo, hi) || v < lo || v > hi {
				t.Errorf("EncodeULaw(%d) = %#02x (%d), G.191 %#02x (%d): not neighbours around the input",
					v, got, a, want, b)
			}
		}
		if diff != 4*127 {
			t.Errorf("%d inputs differ from G.191, want 4 at each of 127 negative decision levels", diff)
		}
	})
}

// decisionLevels returns the sorted, distinct output levels of a decoder.
func decisionLevels(decode func(byte) int16) []int {
	var l []int
	for c := range 256 {
		l = append(l, int(decode(byte(c))))
	}
	slices.Sort(l)
	return slices.Compact(l)
}

func adjacent(levels []int, lo, hi int) bool {
	i, ok := slices.BinarySearch(levels, lo)
	return ok && i+1 < len(levels) && levels[i+1] == hi
}

func TestEncodeChoosesABracketingLevel(t *testing.T) {
	for _, l := range laws {
		t.Run(l.name, func(t *testing.T) {
			levels := decisionLevels(l.decode)
			prev := math.MinInt
			for v := math.MinInt16; v <= math.MaxInt16; v++ {
				got := int(l.decode(l.encode(int16(v))))
				i, _ := slices.BinarySearch(levels, v) // levels[i] >= v
				var lo, hi int
				switch {
				case i == 0:
					lo, hi = levels[0], levels[0]
				case i == len(levels):
					lo, hi = levels[i-1], levels[i-1]
				default:
					lo, hi = levels[i-1], levels[i]
				}
				if got != lo && got != hi {
					t.Fatalf("decode(encode(%d)) = %d, want %d or %d", v, got, lo, hi)
				}
				if got < prev {
					t.Fatalf("not monotonic: decode(encode(%d)) = %d < %d", v, got, prev)
				}
				prev = got
			}
		})
	}
}

func TestCodeRoundTrip(t *testing.T) {
	for _, l := range laws {
		t.Run(l.name, func(t *testing.T) {
			for c := range 256 {
				want := byte(c)
				if l.name == "ulaw" && want == 0x7F { // negative zero
					want = ULawSilence
				}
				if got := l.encode(l.decode(byte(c))); got != want {
					t.Errorf("encode(decode(%#02x)) = %#02x, want %#02x", c, got, want)
				}
			}
		})
	}
}

func TestSilence(t *testing.T) {
	tests := []struct {
		name    string
		code    byte
		decode  func(byte) int16
		encode  func(int16) byte
		wantPCM int16
	}{
		{"ulaw", ULawSilence, DecodeULaw, EncodeULaw, 0},
		{"alaw", ALawSilence, DecodeALaw, EncodeALaw, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.decode(tt.code); got != tt.wantPCM {
				t.Errorf("decode(silence %#02x) = %d, want %d", tt.code, got, tt.wantPCM)
			}
			if got := tt.encode(0); got != tt.code {
				t.Errorf("encode(0) = %#02x, want %#02x", got, tt.code)
			}
		})
	}
}

func TestTranscodeTables(t *testing.T) {
	tests := []struct {
		name      string
		transcode func(dst, src []byte) int
		want      func(byte) byte
	}{
		{"ulaw to alaw", ULawToALaw, func(c byte) byte { return EncodeALaw(DecodeULaw(c)) }},
		{"alaw to ulaw", ALawToULaw, func(c byte) byte { return EncodeULaw(DecodeALaw(c)) }},
		{"ulaw to alaw, reference", ULawToALaw, func(c byte) byte { return linear2alaw(ulaw2linear(c)) }},
		{"alaw to ulaw, reference", ALawToULaw, func(c byte) byte { return linear2ulaw(alaw2linear(c)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := make([]byte, 256)
			for i := range src {
				src[i] = byte(i)
			}
			dst := make([]byte, 256)
			if n := tt.transcode(dst, src); n != 256 {
				t.Fatalf("transcoded %d bytes, want 256", n)
			}
			for c, got := range dst {
				if want := tt.want(byte(c)); got != want {
					t.Errorf("%#02x -> %#02x, want %#02x", c, got, want)
				}
			}
			inPlace := slices.Clone(src)
			tt.transcode(inPlace, inPlace)
			if !bytes.Equal(inPlace, dst) {
				t.Errorf("in-place transcoding differs")
			}
		})
	}
}

func TestFrameFunctionLengths(t *testing.T) {
	tests := []struct {
		name           string
		dstLen, srcLen int
		want           int
	}{
		{"equal", 160, 160, 160},
		{"dst shorter", 100, 160, 100},
		{"src shorter", 160, 7, 7},
		{"empty src", 10, 0, 0},
		{"nil dst", 0, 10, 0},
	}
	const guard = 0x5A
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pcm := make([]int16, tt.srcLen)
			(&audiotest.Tone{Rate: 8000, Freq: 1000, Amplitude: 0.5}).Fill(pcm)
			codes := make([]byte, tt.srcLen)
			for i := range codes {
				codes[i] = byte(i * 37)
			}
			check := func(what string, n int, wrote func(i int) bool, want func(i int) bool) {
				t.Helper()
				if n != tt.want {
					t.Errorf("%s returned %d, want %d", what, n, tt.want)
				}
				for i := range tt.dstLen {
					if i < tt.want && !want(i) {
						t.Errorf("%s: sample %d wrong", what, i)
						return
					}
					if i >= tt.want && wrote(i) {
						t.Errorf("%s wrote past the returned count at %d", what, i)
						return
					}
				}
			}
			for _, l := range laws {
				dst := slices.Repeat([]int16{guard}, tt.dstLen)
				n := l.toPCM(dst, codes)
				check(l.name+" decode", n, func(i int) bool { return dst[i] != guard },
					func(i int) bool { return dst[i] == l.decode(codes[i]) })

				enc := slices.Repeat([]byte{guard}, tt.dstLen)
				n = l.fromPCM(enc, pcm)
				check(l.name+" encode", n, func(i int) bool { return enc[i] != guard },
					func(i int) bool { return enc[i] == l.encode(pcm[i]) })
			}
			for name, tc := range map[string]func(dst, src []byte) int{"ULawToALaw": ULawToALaw, "ALawToULaw": ALawToULaw} {
				dst := slices.Repeat([]byte{guard}, tt.dstLen)
				n := tc(dst, codes)
				check(name, n, func(i int) bool { return dst[i] != guard }, func(int) bool { return true })
			}
		})
	}
}

// TestToneQuality checks the codecs as audio: a tone through encode and
// decode keeps its frequency and level, and the signal-to-distortion ratio
// stays where G.711 companding puts it: roughly constant (35–40 dB) over the
// upper 30 dB of its range and falling below that. The thresholds sit about
// 1 dB under the measured values, so they catch a wrong table, not noise.
// 0 dBm0 is -3.16 dBFS (RMS); the frequencies avoid submultiples of 8 kHz so
// the quantisation error is not periodic.
func TestToneQuality(t *testing.T) {
	const dBm0 = -3.16 // dBFS
	tests := []struct {
		name   string
		freq   float64
		level  float64 // dBm0
		minSNR float64
	}{
		{"1020 Hz at 0 dBm0", 1020, 0, 38},
		{"1020 Hz at -10 dBm0", 1020, -10, 35},
		{"310 Hz at -20 dBm0", 310, -20, 36},
		{"3390 Hz at -20 dBm0", 3390, -20, 36},
		{"820 Hz at -30 dBm0", 820, -30, 33},
		{"1020 Hz at -40 dBm0", 1020, -40, 32},
		{"1020 Hz at -45 dBm0", 1020, -45, 27},
	}
	for _, l := range laws {
		for _, tt := range tests {
			t.Run(l.name+"/"+tt.name, func(t *testing.T) {
				const rate = 8000
				amp := math.Pow(10, (tt.level+dBm0+3.0103)/20) // RMS dBFS to peak fraction
				in := make([]int16, rate)
				(&audiotest.Tone{Rate: rate, Freq: tt.freq, Amplitude: amp}).Fill(in)
				codes := make([]byte, len(in))
				out := make([]int16, len(in))
				l.fromPCM(codes, in)
				l.toPCM(out, codes)
				if f := audiotest.DominantFrequency(out, rate); math.Abs(f-tt.freq) > 1 {
					t.Errorf("frequency %.2f Hz, want %v", f, tt.freq)
				}
				inLevel, outLevel := audiotest.ToneLevelDBFS(in, rate, tt.freq), audiotest.ToneLevelDBFS(out, rate, tt.freq)
				if math.Abs(outLevel-inLevel) > 0.3 {
					t.Errorf("level %.2f dBFS, input %.2f dBFS", outLevel, inLevel)
				}
				snr := audiotest.SNRDB(out, rate, tt.freq)
				if snr < tt.minSNR {
					t.Errorf("signal to distortion %.1f dB, want >= %v", snr, tt.minSNR)
				}
				t.Logf("level %.2f dBFS, signal to distortion %.1f dB", outLevel, snr)
			})
		}
	}
}

// goldenSignal is the input of the golden-file test: half a second at 8 kHz
// of a chirp sweeping 200–3800 Hz while rising from -60 to 0 dBFS (into µ-law
// clipping), then seeded full-range noise and the edge values.
func goldenSignal() []int16 {
	const rate, n = 8000, 2000
	x := make([]int16, 0, 4000)
	phase := 0.0
	for i := range n {
		frac := float64(i) / n
		f := 200 * math.Pow(3800.0/200, frac)
		amp := math.Pow(10, (-60+60*frac)/20) * 32767
		x = append(x, int16(math.Round(amp*math.Sin(phase))))
		phase += 2 * math.Pi * f / rate
	}
	rng := rand.New(rand.NewPCG(711, 711))
	for range 1900 {
		x = append(x, int16(rng.Uint32()))
	}
	x = append(x, math.MinInt16, math.MaxInt16, -32636, 32635, 32636, 0, -1, 1, -2, 2, -3, 3, -4, 4, -8, 8, -9, 9)
	for v := -48; len(x) < 4000; v++ {
		x = append(x, int16(v))
	}
	return x
}

func TestGolden(t *testing.T) {
	wavPath := filepath.Join("testdata", "golden.wav")
	if *update {
		if err := audiotest.WriteWAV(wavPath, 8000, goldenSignal()); err != nil {
			t.Fatal(err)
		}
	}
	_, pcm, err := audiotest.ReadWAV(wavPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range laws {
		t.Run(l.name, func(t *testing.T) {
			path := filepath.Join("testdata", "golden"+l.ext)
			got := make([]byte, len(pcm))
			l.fromPCM(got, pcm)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("encoded %d bytes, golden file has %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("byte %d: encoded %#02x from sample %d, golden %#02x", i, got[i], pcm[i], want[i])
				}
			}
			// The golden codes decode and re-encode to themselves (µ-law
			// negative zero aside).
			dec := make([]int16, len(want))
			l.toPCM(dec, want)
			re := make([]byte, len(want))
			l.fromPCM(re, dec)
			for i := range re {
				if re[i] != want[i] && !(l.name == "ulaw" && want[i] == 0x7F) {
					t.Fatalf("golden code %#02x at %d re-encodes to %#02x", want[i], i, re[i])
				}
			}
		})
	}
}

func TestFrameFunctionsDoNotAllocate(t *testing.T) {
	pcm := make([]int16, 160)
	codes := make([]byte, 160)
	other := make([]byte, 160)
	allocs := testing.AllocsPerRun(100, func() {
		ULawToPCM(pcm, codes)
		PCMToULaw(codes, pcm)
		ALawToPCM(pcm, codes)
		PCMToALaw(codes, pcm)
		ULawToALaw(other, codes)
		ALawToULaw(codes, other)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame, want 0", allocs)
	}
}
