package amd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The accuracy set: what people say when they pick up, and what machines
// play (voicemail greetings of different lengths, a carrier's announcement,
// a call-screening prompt), in several espeak-ng voices and speeds, on a clean
// line, under two kinds of line noise and with 5% packet loss, machines with
// and without a beep.
var (
	voices         = []string{"en-us", "en-gb", "en-us+f3", "en-gb-scotland"}
	humanGreetings = []string{
		"Hello?", "Hello.", "Hi.", "Yes?", "Yeah?", "Speaking.", "Hello, Mark speaking.", "Good morning.",
		"Hi, this is Anna.", "Hey, who is this?",
	}
	machineGreetings = []string{
		voicemailGreeting,
		"The person you are calling is not available. Please leave a message after the beep.",
		"Hello, this is Sarah. Sorry I missed your call. Leave your name and number and I will get back to you.",
		"You have reached the office of Doctor Brown. Our office hours are nine to five, Monday to Friday.",
		"Hi, the person you are calling is using a screening service and will get a copy of this conversation. Go ahead and say your name and why you are calling.",
		"The number you have dialed is not in service. Please check the number and try again.",
		"Please leave a message.",
		"Hi, it's Tom, leave a message.",
	}
)

type clip struct {
	name  string
	want  Verdict
	audio []int16
}

func accuracySet(t testing.TB, rate int) []clip {
	var set []clip
	speeds := []int{150, 185}
	noises := []struct {
		kind  string
		level float64
	}{{"", 0}, {"pinknoise", -45}, {"whitenoise", -38}, {"loss", 0.05}}
	for vi, v := range voices {
		for si, s := range speeds {
			for ni, n := range noises {
				lead := silence(time.Duration(250+150*((vi+si+ni)%4))*time.Millisecond, rate)
				add := func(name string, want Verdict, x []int16) {
					switch n.kind {
					case "":
					case "loss": // 5% of the 20 ms packets lost and not concealed (silence)
						x = lose(x, rate, n.level, int64(len(set)))
						name += "+loss"
					default:
						x = mix(x, noise(t, n.kind, n.level, 2*time.Second, rate))
						name += "+" + n.kind
					}
					set = append(set, clip{fmt.Sprintf("%s/%d/%s", v, s, name), want, line(x, rate)})
				}
				// picked: the whole set, or one voice per phrase and speed under -race.
				picked := func(phrase int) bool { return !raceEnabled || vi == (phrase+si)%len(voices) }
				for i, h := range humanGreetings {
					if !picked(i) {
						continue
					}
					add(h, Human, concat(lead, speak(t, h, v, s, rate), silence(4*time.Second, rate)))
				}
				for i, m := range machineGreetings {
					if !picked(len(humanGreetings) + i) {
						continue
					}
					tail := silence(3*time.Second, rate)
					if i%2 == 0 {
						tail = concat(silence(300*time.Millisecond, rate), beep(t, []float64{1000, 850, 1400, 440}[i/2], 400*time.Millisecond, rate), tail)
					}
					add(m, Machine, concat(lead, speak(t, m, v, s, rate), tail))
				}
			}
		}
	}
	return set
}

// TestAccuracy measures the detector on the accuracy set and fails under 90%
// correct or a median time to verdict of 3 s or more (the target).
// Unknown counts as wrong. Run with -v for the confusion matrix.
func TestAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("the accuracy set takes a few seconds to synthesise")
	}
	set := accuracySet(t, 8000)
	confusion := map[Verdict]map[Verdict]int{Human: {}, Machine: {}}
	var times []time.Duration
	var wrong []string
	right, revised := 0, 0
	for _, c := range set {
		d := run(t, Options{}, c.audio)
		r, ok := d.Result()
		if !ok {
			r = Result{Verdict: Unknown, Reason: "no verdict", After: d.Heard()}
		}
		confusion[c.want][r.Verdict]++
		if r.Revised {
			revised++
		}
		times = append(times, r.After)
		if r.Verdict == c.want {
			right++
		} else {
			wrong = append(wrong, fmt.Sprintf("%s: %v", c.name, r))
		}
	}
	slices.Sort(times)
	median := times[len(times)/2]
	acc := float64(right) / float64(len(set))
	var b strings.Builder
	fmt.Fprintf(&b, "%d clips, %.1f%% correct (%d by a late beep's revision), time to verdict median %v, p90 %v, max %v\n",
		len(set), 100*acc, revised, median, times[len(times)*9/10], times[len(times)-1])
	fmt.Fprintf(&b, "%-12s %8s %8s %8s\n", "truth \\ got", "human", "machine", "unknown")
	for _, w := range []Verdict{Human, Machine} {
		fmt.Fprintf(&b, "%-12s %8d %8d %8d\n", w, confusion[w][Human], confusion[w][Machine], confusion[w][Unknown])
	}
	t.Log("\n" + b.String())
	for _, w := range wrong {
		t.Log("wrong: " + w)
	}
	if acc < 0.9 {
		t.Errorf("accuracy %.1f%%, want at least 90%%", 100*acc)
	}
	if median >= 3*time.Second {
		t.Errorf("median time to verdict %v, want under 3 s", median)
	}
}
