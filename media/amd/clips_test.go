package amd

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
)

// The test audio is made the way a call would carry it: espeak-ng speaks the
// words, sox resamples them to the line's rate and makes the noise and the
// beeps, the speech is set to a talker's level on a telephone line
// (audiotest.SpeechLevel, -22 dBFS while speaking), noise is added at a
// given level, and at 8 kHz everything passes through G.711 µ-law as on a
// PCMU call.

var (
	clipMu    sync.Mutex
	clipCache = map[string][]int16{}
)

// tool runs a command that makes a wav file and reads it back.
func tool(t testing.TB, key string, rate int, name string, args ...string) []int16 {
	t.Helper()
	clipMu.Lock()
	defer clipMu.Unlock()
	if x, ok := clipCache[key]; ok {
		return x
	}
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found: install it with `apt-get install -y espeak-ng sox` (deploy/test.sh does this)", name)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.wav")
	for i, a := range args {
		if a == "OUT" {
			args[i] = out
		}
		if a == "DIR" {
			args[i] = dir
		}
	}
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, b)
	}
	r, x, err := audiotest.ReadWAV(out)
	if err != nil {
		t.Fatal(err)
	}
	if r != rate {
		t.Fatalf("%s made %d Hz, want %d", name, r, rate)
	}
	clipCache[key] = x
	return x
}

// speak is text spoken by espeak-ng's voice at wpm words a minute, resampled
// by sox to rate and set to audiotest.SpeechLevel.
func speak(t testing.TB, text, voice string, wpm, rate int) []int16 {
	t.Helper()
	key := fmt.Sprint("speech", text, voice, wpm, rate)
	clipMu.Lock()
	x, ok := clipCache[key]
	clipMu.Unlock()
	if ok {
		return x
	}
	raw := tool(t, key+"raw", 22050, "espeak-ng", "-v", voice, "-s", fmt.Sprint(wpm), "-w", "OUT", text)
	// sox reads what espeak wrote; a second command so each tool's output is checked.
	dir := t.TempDir()
	in := filepath.Join(dir, "in.wav")
	if err := audiotest.WriteWAV(in, 22050, raw); err != nil {
		t.Fatal(err)
	}
	x = tool(t, key, rate, "sox", in, "-r", fmt.Sprint(rate), "-b", "16", "OUT", "rate", "-h")
	x = append([]int16(nil), x...)
	gain(x, audiotest.SpeechLevel-audiotest.ActiveLevel(x, rate))
	clipMu.Lock()
	clipCache[key] = x
	clipMu.Unlock()
	return x
}

// noise is d of sox's kind of noise ("whitenoise", "pinknoise", "brownnoise") at level dBFS RMS.
func noise(t testing.TB, kind string, level float64, d time.Duration, rate int) []int16 {
	t.Helper()
	// -R: sox's repeatable random numbers, so every run hears the same noise.
	x := tool(t, fmt.Sprint(kind, d, rate), rate, "sox", "-R", "-n", "-r", fmt.Sprint(rate), "-b", "16", "-c", "1", "OUT",
		"synth", fmt.Sprint(d.Seconds()), kind)
	x = append([]int16(nil), x...)
	gain(x, level-audiotest.RMSDBFS(x))
	return x
}

// beep is a sine from sox: hz for d at -12 dBFS, a typical voicemail beep.
func beep(t testing.TB, hz float64, d time.Duration, rate int) []int16 {
	t.Helper()
	x := tool(t, fmt.Sprint("sine", hz, d, rate), rate, "sox", "-n", "-r", fmt.Sprint(rate), "-b", "16", "-c", "1", "OUT",
		"synth", fmt.Sprint(d.Seconds()), "sine", fmt.Sprint(hz), "vol", "0.35")
	return append([]int16(nil), x...)
}

func gain(x []int16, db float64) {
	g := math.Pow(10, db/20)
	for i, v := range x {
		x[i] = int16(max(-32768, min(32767, math.Round(float64(v)*g))))
	}
}

func silence(d time.Duration, rate int) []int16 { return make([]int16, int(d.Seconds()*float64(rate))) }

func concat(parts ...[]int16) []int16 {
	var out []int16
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// mix adds n (repeated as needed) to x.
func mix(x, n []int16) []int16 {
	out := make([]int16, len(x))
	for i, v := range x {
		out[i] = int16(max(-32768, min(32767, int(v)+int(n[i%len(n)]))))
	}
	return out
}

// lose silences a share of x's 20 ms frames, chosen by a seeded generator:
// packets lost on the way and not concealed (the worst case; the jitter
// buffer's concealment would fill them).
func lose(x []int16, rate int, share float64, seed int64) []int16 {
	out := append([]int16(nil), x...)
	rnd := rand.New(rand.NewPCG(uint64(seed), 16))
	f := rate / 50
	for i := 0; i < len(out); i += f {
		if rnd.Float64() < share {
			clear(out[i:min(len(out), i+f)])
		}
	}
	return out
}

// line passes 8 kHz audio through G.711 µ-law, as a PCMU call carries it.
func line(x []int16, rate int) []int16 {
	if rate != 8000 {
		return x
	}
	out := make([]int16, len(x))
	for i, v := range x {
		out[i] = g711.DecodeULaw(g711.EncodeULaw(v))
	}
	return out
}

// run feeds x to a detector in 20 ms frames, as the call path does, until it is done.
func run(t testing.TB, o Options, x []int16) *Detector {
	t.Helper()
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	f := d.Options().SampleRate / 50
	for i := 0; i < len(x) && !d.Done(); i += f {
		d.Write(x[i:min(len(x), i+f)])
	}
	return d
}
