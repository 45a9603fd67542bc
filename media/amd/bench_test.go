package amd

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCallSecond is the CPU one call's detector costs per second of
// audio, at the worst: every block loud, so the beep search runs on each
// (speech of a greeting, then a beep). Reported as ns/call-s; divide by 1e9
// for the share of one core per call.
func BenchmarkCallSecond(b *testing.B) {
	for _, rate := range []int{8000, 16000} {
		b.Run(fmt.Sprint(rate), func(b *testing.B) {
			x := line(concat(speak(b, voicemailGreeting, "en-us", 160, rate), beep(b, 1000, time.Second, rate)), rate)
			f := rate / 50
			b.ReportAllocs()
			b.ResetTimer()
			samples := 0
			for b.Loop() {
				d, _ := New(Options{SampleRate: rate, TotalAnalysis: time.Hour, MaxWordLength: time.Hour, MaxWords: 1 << 30, Greeting: time.Hour, InitialSilence: time.Hour})
				for i := 0; i+f <= len(x); i += f {
					d.Write(x[i : i+f])
				}
				samples += len(x)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(samples)/float64(rate)), "ns/call-s")
		})
	}
}
