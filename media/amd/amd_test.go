package amd

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const voicemailGreeting = "Hi, you have reached the voicemail of John Smith. I can't take your call right now. Please leave a message after the tone."

// TestDecisions: the four cases a dialer meets most, each with its verdict,
// its reason and when it came (media time, so exact).
func TestDecisions(t *testing.T) {
	for _, rate := range []int{8000, 16000} {
		hello := speak(t, "Hello?", "en-us", 160, rate)
		greeting := speak(t, voicemailGreeting, "en-us", 160, rate)
		for _, tc := range []struct {
			name      string
			audio     []int16
			verdict   Verdict
			reason    Reason
			notAfter  time.Duration
			notBefore time.Duration
		}{
			// A person says "Hello?" (under a second with espeak's own pauses)
			// and waits: human when 0.8 s of silence follows the word.
			{"human hello", concat(silence(400*time.Millisecond, rate), hello, silence(4*time.Second, rate)),
				Human, ReasonHuman, 2200 * time.Millisecond, 1200 * time.Millisecond},
			// A voicemail greeting: machine once 1.5 s of speech has been heard,
			// long before the greeting ends.
			{"voicemail", concat(silence(300*time.Millisecond, rate), greeting, beep(t, 1000, 500*time.Millisecond, rate), silence(2*time.Second, rate)),
				Machine, ReasonLongGreeting, 2500 * time.Millisecond, 1500 * time.Millisecond},
			{"silence", silence(6*time.Second, rate), Unknown, ReasonNoSpeech, 2500 * time.Millisecond, 2500 * time.Millisecond},
			// Loud pink noise (-35 dBFS, above the absolute threshold) is not speech.
			{"noise", noise(t, "pinknoise", -35, 6*time.Second, rate), Unknown, ReasonNoSpeech, 2500 * time.Millisecond, 2500 * time.Millisecond},
		} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, rate), func(t *testing.T) {
				d := run(t, Options{SampleRate: rate}, line(tc.audio, rate))
				r, ok := d.Result()
				if !ok {
					t.Fatalf("no verdict after %v", d.Heard())
				}
				t.Log(r)
				if r.Verdict != tc.verdict || r.Reason != tc.reason {
					t.Errorf("verdict %s (%s), want %s (%s)", r.Verdict, r.Reason, tc.verdict, tc.reason)
				}
				if r.After > tc.notAfter || r.After < tc.notBefore {
					t.Errorf("verdict after %v, want within [%v, %v]", r.After, tc.notBefore, tc.notAfter)
				}
			})
		}
	}
}

// TestLeaveMessageAfterBeep: with WaitForBeep, the message starts when the
// beep ends (to the 10 ms block), for beeps across the band and at both rates.
func TestLeaveMessageAfterBeep(t *testing.T) {
	for _, rate := range []int{8000, 16000} {
		greeting := speak(t, voicemailGreeting, "en-gb", 175, rate)
		for _, b := range []struct {
			hz float64
			d  time.Duration
		}{{1000, 500 * time.Millisecond}, {440, 200 * time.Millisecond}, {850, time.Second}, {1400, 150 * time.Millisecond}, {2000, 120 * time.Millisecond}} {
			t.Run(fmt.Sprintf("%vHz/%v/%d", b.hz, b.d, rate), func(t *testing.T) {
				lead := silence(300*time.Millisecond, rate)
				gap := silence(400*time.Millisecond, rate)
				audio := concat(lead, greeting, gap, beep(t, b.hz, b.d, rate), silence(3*time.Second, rate))
				audio = mix(audio, noise(t, "whitenoise", -50, time.Second, rate))
				d := run(t, Options{SampleRate: rate, WaitForBeep: true}, line(audio, rate))
				r, _ := d.Result()
				c, ok := d.Cue()
				if r.Verdict != Machine || !ok {
					t.Fatalf("verdict %v, cue %v %v", r, ok, c)
				}
				end := time.Duration(len(lead)+len(greeting)+len(gap))*time.Second/time.Duration(rate) + b.d
				t.Logf("%v; cue %+v; beep ended at %v", r, c, end)
				if c.Reason != CueBeep || c.At < end || c.At > end+20*time.Millisecond {
					t.Errorf("cue %+v, want the beep's end at %v", c, end)
				}
				if c.BeepHz < b.hz*0.98 || c.BeepHz > b.hz*1.02 {
					t.Errorf("beep at %v Hz, want %v", c.BeepHz, b.hz)
				}
			})
		}
	}
}

// TestLeaveMessageWithoutBeep: a greeting with no beep after it: the message
// starts after MessageSilence of silence, not at the timeout.
func TestLeaveMessageWithoutBeep(t *testing.T) {
	greeting := speak(t, voicemailGreeting, "en-us", 160, 8000)
	audio := concat(silence(300*time.Millisecond, 8000), greeting, silence(5*time.Second, 8000))
	d := run(t, Options{WaitForBeep: true}, line(audio, 8000))
	c, ok := d.Cue()
	end := 300*time.Millisecond + time.Duration(len(greeting))*time.Second/8000
	if !ok || c.Reason != CueSilence {
		t.Fatalf("cue %+v %v, want silence", c, ok)
	}
	// espeak's own trailing silence is part of the clip: the cue comes 2 s
	// after the last speech, so within 2 s of the clip's end.
	if c.At > end+2*time.Second || c.At < end {
		t.Errorf("cue at %v, greeting clip ended at %v", c.At, end)
	}
}

// TestBeepAloneIsMachine: a voicemail box that beeps at once (no greeting, or
// too short a greeting to decide on) is a machine, and the message starts
// after the beep.
func TestBeepAloneIsMachine(t *testing.T) {
	audio := concat(silence(600*time.Millisecond, 8000), beep(t, 1000, 400*time.Millisecond, 8000), silence(3*time.Second, 8000))
	d := run(t, Options{WaitForBeep: true}, line(audio, 8000))
	r, _ := d.Result()
	c, _ := d.Cue()
	if r.Verdict != Machine || r.Reason != ReasonBeep || c.Reason != CueBeep || c.At < time.Second || c.At > time.Second+10*time.Millisecond {
		t.Errorf("%v, cue %+v: want machine by the beep, cue when it ends at 1 s (+ one 10 ms block)", r, c)
	}
}

// TestSpeechIsNoBeep: no voice of the test set contains a "beep": tonal
// speech (sustained vowels of high voices) must not start a message early.
func TestSpeechIsNoBeep(t *testing.T) {
	for vi, v := range voices {
		for i, text := range append(slices.Clone(humanGreetings), machineGreetings...) {
			if raceEnabled && i%len(voices) != vi {
				continue
			}
			x := line(speak(t, text, v, 160, 8000), 8000)
			d, _ := New(Options{})
			for i := 0; i < len(x); i += 80 {
				if ended, hz, l := d.beep(x[i:min(len(x), i+80)], energyOf(x[i:min(len(x), i+80)]), true); ended {
					t.Errorf("%s %q: beep of %v at %v Hz at %v", v, text, l, hz, time.Duration(i)*time.Second/8000)
				}
			}
		}
	}
}

func energyOf(x []int16) float64 {
	var e float64
	for _, v := range x {
		e += float64(v) * float64(v)
	}
	return e
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{SampleRate: 44100}, {TotalAnalysis: time.Second}, {BeepPurity: 2}, {Greeting: -1}, {SilenceThreshold: 3}} {
		if _, err := New(o); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v, want ErrOptions", o, err)
		}
	}
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if o := d.Options(); o.SampleRate != 8000 || o.Greeting != 1500*time.Millisecond || o.MaxWords != 3 {
		t.Errorf("defaults %+v", o)
	}
	// SilenceIsMachine: Asterisk's INITIALSILENCE.
	d = run(t, Options{SilenceIsMachine: true}, silence(3*time.Second, 8000))
	if r, _ := d.Result(); r.Verdict != Machine || r.Reason != ReasonNoSpeech {
		t.Errorf("silence with SilenceIsMachine: %v", r)
	}
	// µ-law input is decoded.
	d, _ = New(Options{})
	b := make([]byte, 8000*3)
	for i := range b {
		b[i] = 0xFF
	}
	d.WriteULaw(b)
	if r, ok := d.Result(); !ok || r.Reason != ReasonNoSpeech || !strings.Contains(r.String(), "no_speech") {
		t.Errorf("µ-law silence: %v", r)
	}
}

// TestLateBeepRevises: a short greeting ("Please leave a message.", a person's
// length) is heard as human, until the beep 1.2 s later revises it to
// machine, with the cue at the beep's end; with LateBeep off, it stays human.
// A person's "Hello?" with no beep stays human once the window has passed.
func TestLateBeepRevises(t *testing.T) {
	greeting := speak(t, "Please leave a message.", "en-us", 160, 8000)
	lead := silence(300*time.Millisecond, 8000)
	gap := silence(1200*time.Millisecond, 8000)
	audio := line(concat(lead, greeting, gap, beep(t, 1000, 300*time.Millisecond, 8000), silence(3*time.Second, 8000)), 8000)
	d := run(t, Options{WaitForBeep: true}, audio)
	r, _ := d.Result()
	c, ok := d.Cue()
	end := time.Duration(len(lead)+len(greeting)+len(gap))*time.Second/8000 + 300*time.Millisecond
	t.Logf("%v revised %v; cue %+v; beep ended at %v", r, r.Revised, c, end)
	if r.Verdict != Machine || r.Reason != ReasonBeep || !r.Revised || !ok || c.Reason != CueBeep || c.At < end || c.At > end+20*time.Millisecond {
		t.Errorf("%v (revised %v), cue %+v: want machine revised by the beep, cue at %v", r, r.Revised, c, end)
	}
	d = run(t, Options{LateBeep: -1}, audio)
	if r, _ := d.Result(); r.Verdict != Human || r.Revised {
		t.Errorf("LateBeep off: %v", r)
	}
	d = run(t, Options{}, line(concat(lead, speak(t, "Hello?", "en-us", 160, 8000), silence(6*time.Second, 8000)), 8000))
	if r, _ := d.Result(); r.Verdict != Human || r.Revised || !d.Done() || d.Heard() < r.After+3*time.Second {
		t.Errorf("hello: %v, done %v after %v", r, d.Done(), d.Heard())
	}
}
