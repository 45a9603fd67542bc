package audiotest

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// Sentences are a few short English sentences to speak through a call: varied
// voiced and unvoiced sounds, each about two seconds long with espeak-ng.
var Sentences = []string{
	"The birch canoe slid on the smooth planks.",
	"Glue the sheet to the dark blue background.",
	"It is easy to tell the depth of a well.",
	"These days a chicken leg is a rare dish.",
	"Rice is often served in round bowls.",
	"The juice of lemons makes fine punch.",
}

// SpeechLevel is the RMS level, in dBFS, of the active part of Speech's audio
// (frames within 30 dB of the loudest): a normal talker on a telephone line.
const SpeechLevel = -22.0

type speechKey struct {
	text string
	rate int
}

var (
	speechMu    sync.Mutex
	speechCache = map[speechKey][]int16{}
)

// Speech returns text spoken by espeak-ng (its en-us voice) at rate samples a
// second, resampled with Resample and scaled to SpeechLevel. The same text and
// rate give the same samples (with the same espeak-ng). The result is shared
// between callers: copy it before changing it. It fails with a message naming
// the package to install when espeak-ng is missing.
func Speech(text string, rate int) ([]int16, error) {
	k := speechKey{text, rate}
	speechMu.Lock()
	defer speechMu.Unlock()
	if x, ok := speechCache[k]; ok {
		return x, nil
	}
	bin, err := exec.LookPath("espeak-ng")
	if err != nil {
		return nil, errors.New("audiotest: espeak-ng not found: install it with `apt-get install -y espeak-ng` (deploy/test.sh does this)")
	}
	dir, err := os.MkdirTemp("", "audiotest-speech-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	wav := filepath.Join(dir, "s.wav")
	if out, err := exec.Command(bin, "-v", "en-us", "-s", "150", "-w", wav, text).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("audiotest: espeak-ng: %v: %s", err, out)
	}
	from, x, err := ReadWAV(wav)
	if err != nil {
		return nil, err
	}
	x = Resample(x, from, rate)
	scaleTo(x, rate, SpeechLevel)
	speechCache[k] = x
	return x, nil
}

// ActiveLevel is the RMS level in dBFS of the 20 ms frames of x that are
// within 30 dB of its loudest frame: the level of the speech without its pauses.
func ActiveLevel(x []int16, rate int) float64 {
	n := rate / 50
	loudest := math.Inf(-1)
	for i := 0; i+n <= len(x); i += n {
		loudest = max(loudest, RMSDBFS(x[i:i+n]))
	}
	var sum float64
	var count int
	for i := 0; i+n <= len(x); i += n {
		if RMSDBFS(x[i:i+n]) > loudest-30 {
			for _, v := range x[i : i+n] {
				sum += float64(v) * float64(v)
			}
			count += n
		}
	}
	if count == 0 {
		return math.Inf(-1)
	}
	return 10 * math.Log10(sum/float64(count)/(ref*ref))
}

func scaleTo(x []int16, rate int, dBFS float64) {
	l := ActiveLevel(x, rate)
	if math.IsInf(l, 0) {
		return
	}
	g := math.Pow(10, (dBFS-l)/20)
	for i, v := range x {
		x[i] = saturate(math.Round(float64(v) * g))
	}
}

// Resample converts x from one sample rate to another with a windowed-sinc
// low-pass (Blackman window, 32 zero crossings each side at the lower rate,
// cut-off at 0.9 of the lower Nyquist frequency), one filter per output phase
// of the rates' ratio. It is for tests and tools: exact, not fast.
func Resample(x []int16, from, to int) []int16 {
	if from == to || len(x) == 0 {
		return append([]int16(nil), x...)
	}
	g := gcd(from, to)
	up, down := to/g, from/g // output i sits at input position i·down/up
	ratio := float64(to) / float64(from)
	fc := 0.9 * 0.5 * math.Min(1, ratio) // cut-off in cycles per input sample
	const zeros = 32
	half := int(math.Ceil(zeros / (2 * fc)))
	taps := 2*half + 1
	// filters[p] holds the taps for input samples base-half..base+half of an
	// output whose position is base + p/up.
	filters := make([]float64, up*taps)
	for p := range up {
		frac := float64(p) / float64(up)
		for k := range taps {
			d := float64(k-half) - frac
			if math.Abs(d) >= float64(half) {
				continue
			}
			w := 0.42 + 0.5*math.Cos(math.Pi*d/float64(half)) + 0.08*math.Cos(2*math.Pi*d/float64(half))
			filters[p*taps+k] = 2 * fc * sinc(2*fc*d) * w
		}
	}
	n := int(int64(len(x)) * int64(to) / int64(from))
	out := make([]int16, n)
	for i := range out {
		pos := int64(i) * int64(down)
		base, p := int(pos/int64(up)), int(pos%int64(up))
		f := filters[p*taps : (p+1)*taps]
		var acc float64
		for k, c := range f {
			if j := base + k - half; j >= 0 && j < len(x) {
				acc += float64(x[j]) * c
			}
		}
		out[i] = saturate(math.Round(acc))
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}
