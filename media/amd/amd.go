// Package amd tells, from the first seconds of a called party's audio, whether
// a person or an answering machine (voicemail, a carrier's announcement, a
// call-screening prompt) picked up, and, for a machine, when a message may
// start: after the beep, or after the greeting when no beep comes.
//
// It is our own detector on the audio alone (no speech recogniser, no cloud
// call). It follows the cadence rules that production dialers use — Asterisk's
// AMD() (app_amd.c and amd.conf: initial silence, greeting length, silence
// after the greeting, word count, longest word, total analysis time), the same
// cues Twilio documents as MachineDetectionSpeechThreshold/SpeechEndThreshold/
// SilenceTimeout and jambonz as its amd timers — because they rest on how the
// two actually talk: a person says a short greeting ("Hello?") and waits for
// the caller; a machine plays a long greeting without waiting.
//
// # How it listens
//
// Audio (16-bit linear PCM at 8 or 16 kHz, in frames of any length) is cut
// into 10 ms blocks. A block is speech when its RMS level is above both an
// absolute floor (Options.SilenceThreshold, -42 dBFS by default: Asterisk's
// silence_threshold of 256 on a 0..32767 scale) and the line's noise floor plus
// Options.NoiseMargin. The noise floor is the quietest block of the last
// second (minimum statistics), so steady hiss, hum or comfort noise is silence
// however loud it is, while speech, which always dips between syllables, is
// not. A run of speech blocks at least MinWordLength long is a word; a word
// ends after BetweenWordsSilence of silence.
//
// The verdict, first rule that fires:
//
//   - a beep (see below) before any verdict: machine, ReasonBeep;
//   - speech adding up to Greeting: machine, ReasonLongGreeting;
//   - more than MaxWords words: machine, ReasonMaxWords;
//   - one word longer than MaxWordLength: machine, ReasonMaxWordLength;
//   - AfterGreetingSilence of silence after at least one word: human,
//     ReasonHuman (a short greeting and then the person waits);
//   - no word within InitialSilence: unknown, ReasonNoSpeech (a person who
//     picks up and waits for the caller to speak, which many people do with an
//     unknown number; Asterisk calls this MACHINE — set SilenceIsMachine for that);
//   - nothing decided within TotalAnalysis: unknown, ReasonTooLong.
//
// # The beep
//
// A voicemail beep is one steady tone, 400 to 2100 Hz, held for at least
// MinBeep (100 ms or more on the systems we know; 1 kHz for 0.5 s is common).
// Each 10 ms block is searched for its strongest frequency with Goertzel
// filters on a 50 Hz grid from 400 to 2100 Hz, refined to 12.5 Hz; the block is
// tonal when that one frequency holds at least BeepPurity of the block's power
// (a sine holds all of it; speech spreads its power over harmonics and
// formants). MinBeep of consecutive tonal blocks at the same frequency (within
// 2%) is a beep; the message may start when it ends.
//
// A beep within LateBeep (3 s) after a human or unknown verdict revises it to
// machine (Result.Revised): a short voicemail greeting ("Please leave a
// message.") sounds like a person until its beep. The caller that acted on the
// first verdict (the agent began its opening line) switches to what it does
// for a machine.
//
// After a machine verdict, with Options.WaitForBeep, the detector keeps
// listening for the cue to start a message: the end of a beep (CueBeep), else
// the end of the greeting followed by MessageSilence of silence (CueSilence),
// else BeepTimeout after the start (CueTimeout).
//
// Times are media time: the amount of audio written before the event, so the
// detector is deterministic and testable without a clock. The caller adds the
// moment the first sample was heard (the 200 OK) for wall-clock times.
//
// A Detector is not safe for concurrent use; one call's media goroutine owns it.
// It allocates nothing per block.
package amd

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cxco/gateway/media/g711"
)

// Verdict is who answered.
type Verdict string

// Verdicts.
const (
	Human   Verdict = "human"
	Machine Verdict = "machine"
	Unknown Verdict = "unknown"
)

// Reason is the rule that gave the verdict.
type Reason string

// Reasons.
const (
	ReasonHuman         Reason = "short_greeting"    // a short greeting, then silence
	ReasonLongGreeting  Reason = "long_greeting"     // speech longer than Greeting
	ReasonMaxWords      Reason = "max_words"         // more words than MaxWords
	ReasonMaxWordLength Reason = "max_word_length"   // one word longer than MaxWordLength
	ReasonBeep          Reason = "beep"              // a voicemail beep
	ReasonNoSpeech      Reason = "no_speech"         // silence for InitialSilence
	ReasonTooLong       Reason = "max_analysis_time" // nothing decided within TotalAnalysis
)

// Result is the verdict and what led to it.
type Result struct {
	Verdict Verdict
	Reason  Reason
	// After is how much audio had been heard when the verdict was made.
	After time.Duration
	// Speech is the speech heard until then, Words the words counted, and
	// FirstSpeech when the first word began (zero if none).
	Speech      time.Duration
	Words       int
	FirstSpeech time.Duration
	// Revised is set when a late beep turned a human or unknown verdict
	// into machine; After is then the revision's time.
	Revised bool
}

func (r Result) String() string {
	return fmt.Sprintf("%s (%s) after %v: %d words, %v of speech", r.Verdict, r.Reason, r.After, r.Words, r.Speech)
}

// CueReason says why a message may start.
type CueReason string

// Cue reasons.
const (
	CueBeep    CueReason = "beep"    // a beep ended
	CueSilence CueReason = "silence" // the greeting ended and no beep followed
	CueTimeout CueReason = "timeout" // neither within BeepTimeout
)

// Cue is the moment a message for a machine may start.
type Cue struct {
	Reason CueReason
	At     time.Duration // audio heard when the cue was found
	// BeepHz and BeepLength describe the beep, for CueBeep.
	BeepHz     float64
	BeepLength time.Duration
}

// Options tunes a Detector. The zero value of each field takes its default.
type Options struct {
	SampleRate int // 8000 (default) or 16000

	InitialSilence       time.Duration // 2.5 s: no word by then is ReasonNoSpeech
	Greeting             time.Duration // 1.5 s of speech is a machine's greeting
	AfterGreetingSilence time.Duration // 0.8 s of silence after a short greeting is a person
	TotalAnalysis        time.Duration // 5 s: then unknown
	MinWordLength        time.Duration // 100 ms of speech is a word
	BetweenWordsSilence  time.Duration // 50 ms of silence ends a word
	MaxWords             int           // 3: a fourth word is a machine
	MaxWordLength        time.Duration // 5 s

	SilenceThreshold float64 // dBFS; -42
	NoiseMargin      float64 // dB above the noise floor that speech must reach; 10

	// SilenceIsMachine makes InitialSilence a machine's verdict (Asterisk's
	// INITIALSILENCE) instead of unknown.
	SilenceIsMachine bool

	// WaitForBeep keeps listening after a machine verdict for the moment a
	// message may start (Cue).
	WaitForBeep    bool
	MinBeep        time.Duration // 100 ms
	BeepPurity     float64       // share of a block's power in one frequency; 0.75
	MessageSilence time.Duration // 2 s of silence after the greeting starts a message without a beep
	BeepTimeout    time.Duration // 20 s after the start: start the message anyway
	// LateBeep is how long after a human or unknown verdict a beep still
	// revises it to machine; 3 s, negative: never.
	LateBeep time.Duration
}

// ErrOptions is returned for options that contradict each other.
var ErrOptions = errors.New("amd: invalid options")

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.SampleRate == 0 {
		o.SampleRate = 8000
	}
	def(&o.InitialSilence, 2500*time.Millisecond)
	def(&o.Greeting, 1500*time.Millisecond)
	def(&o.AfterGreetingSilence, 800*time.Millisecond)
	def(&o.TotalAnalysis, 5*time.Second)
	def(&o.MinWordLength, 100*time.Millisecond)
	def(&o.BetweenWordsSilence, 50*time.Millisecond)
	def(&o.MaxWordLength, 5*time.Second)
	def(&o.MinBeep, 100*time.Millisecond)
	def(&o.MessageSilence, 2*time.Second)
	def(&o.BeepTimeout, 20*time.Second)
	def(&o.LateBeep, 3*time.Second)
	if o.MaxWords == 0 {
		o.MaxWords = 3
	}
	if o.SilenceThreshold == 0 {
		o.SilenceThreshold = -42
	}
	if o.NoiseMargin == 0 {
		o.NoiseMargin = 10
	}
	if o.BeepPurity == 0 {
		o.BeepPurity = 0.75
	}
	return o
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case o.SampleRate != 8000 && o.SampleRate != 16000:
		return fmt.Errorf("%w: sample rate %d (8000 or 16000)", ErrOptions, o.SampleRate)
	case o.InitialSilence < 0 || o.Greeting < 0 || o.AfterGreetingSilence < 0 || o.TotalAnalysis < 0 ||
		o.MinWordLength < 0 || o.BetweenWordsSilence < 0 || o.MaxWordLength < 0 || o.MinBeep < 0 ||
		o.MessageSilence < 0 || o.BeepTimeout < 0 || o.MaxWords < 0:
		return fmt.Errorf("%w: negative duration or count", ErrOptions)
	case o.TotalAnalysis < o.InitialSilence:
		return fmt.Errorf("%w: total analysis time %v shorter than the initial silence %v", ErrOptions, o.TotalAnalysis, o.InitialSilence)
	case o.BeepPurity <= 0 || o.BeepPurity > 1:
		return fmt.Errorf("%w: beep purity %v (0 to 1)", ErrOptions, o.BeepPurity)
	case o.SilenceThreshold > 0 || o.NoiseMargin < 0:
		return fmt.Errorf("%w: silence threshold %v dBFS must be negative and the noise margin %v dB positive", ErrOptions, o.SilenceThreshold, o.NoiseMargin)
	}
	return nil
}

const (
	block      = 10 * time.Millisecond
	floorSpan  = 100 // blocks of minimum statistics: 1 s
	beepLowHz  = 400.0
	beepHighHz = 2100.0
	gridHz     = 50.0
	fullScale  = 32768.0
)

// Detector is one call's answering-machine detector.
type Detector struct {
	o         Options
	n         int     // samples per block
	buf       []int16 // the block being filled
	fill      int
	blocks    int // blocks analysed
	absThr    float64
	floor     [floorSpan]float64
	grid      []goertzel // the 50 Hz grid
	refine    [4]goertzel
	decided   bool
	decidedAt int // block of the (first) verdict
	res       Result
	cue       Cue
	cued      bool

	// cadence, in blocks
	speech       int // speech blocks since the start
	run          int // consecutive speech blocks
	silence      int // consecutive silent blocks
	inWord       bool
	words        int
	firstSpeech  int // block where the first word began, -1 before
	lastSpeechAt int // block after the last speech block

	// beep
	toneHz     float64
	toneBlocks int
}

type goertzel struct {
	hz, coeff, cos, sin float64
}

func newGoertzel(hz float64, rate int) goertzel {
	w := 2 * math.Pi * hz / float64(rate)
	return goertzel{hz: hz, coeff: 2 * math.Cos(w), cos: math.Cos(w), sin: math.Sin(w)}
}

// power is |X(f)|² of x at the filter's frequency.
func (g goertzel) power(x []int16) float64 {
	var s1, s2 float64
	for _, v := range x {
		s0 := float64(v) + g.coeff*s1 - s2
		s2, s1 = s1, s0
	}
	re := s1 - s2*g.cos
	im := s2 * g.sin
	return re*re + im*im
}

// New returns a Detector with o's settings.
func New(o Options) (*Detector, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	n := o.SampleRate / 100
	d := &Detector{o: o, n: n, buf: make([]int16, n), firstSpeech: -1}
	d.absThr = math.Pow(10, o.SilenceThreshold/10) * fullScale * fullScale // mean square
	for i := range d.floor {
		d.floor[i] = math.Inf(1)
	}
	for hz := beepLowHz; hz <= beepHighHz; hz += gridHz {
		d.grid = append(d.grid, newGoertzel(hz, o.SampleRate))
	}
	return d, nil
}

// Options returns the detector's settings, defaults filled in.
func (d *Detector) Options() Options { return d.o }

// Write analyses the next samples of the called party's audio.
func (d *Detector) Write(pcm []int16) {
	for len(pcm) > 0 {
		c := copy(d.buf[d.fill:], pcm)
		d.fill += c
		pcm = pcm[c:]
		if d.fill == d.n {
			d.fill = 0
			d.analyse(d.buf)
			if d.Done() {
				return
			}
		}
	}
}

// WriteULaw analyses G.711 µ-law audio at 8 kHz.
func (d *Detector) WriteULaw(b []byte) {
	var pcm [160]int16
	for len(b) > 0 {
		k := min(len(b), len(pcm))
		for i, c := range b[:k] {
			pcm[i] = g711.DecodeULaw(c)
		}
		d.Write(pcm[:k])
		b = b[k:]
	}
}

// Result returns the verdict once it is made.
func (d *Detector) Result() (Result, bool) { return d.res, d.decided }

// Cue returns the moment a message may start, once found (WaitForBeep only).
func (d *Detector) Cue() (Cue, bool) { return d.cue, d.cued }

// Done reports that there is nothing more to listen for: the verdict is made
// and, for a machine with WaitForBeep, the cue found.
func (d *Detector) Done() bool {
	if !d.decided {
		return false
	}
	if d.res.Verdict != Machine {
		return !d.lateBeepOpen()
	}
	return !d.o.WaitForBeep || d.cued
}

// lateBeepOpen: a beep would still revise the verdict.
func (d *Detector) lateBeepOpen() bool {
	return d.o.LateBeep > 0 && d.blocks < d.decidedAt+d.blocksOf(d.o.LateBeep)
}

// Heard is the audio analysed so far.
func (d *Detector) Heard() time.Duration { return d.dur(d.blocks) }

func (d *Detector) dur(blocks int) time.Duration { return time.Duration(blocks) * block }

func (d *Detector) blocksOf(t time.Duration) int { return int((t + block - 1) / block) }

func (d *Detector) analyse(x []int16) {
	var energy float64
	for _, v := range x {
		energy += float64(v) * float64(v)
	}
	ms := energy / float64(len(x))
	d.floor[d.blocks%floorSpan] = ms
	floor := math.Inf(1)
	for _, f := range d.floor {
		floor = min(floor, f)
	}
	d.blocks++
	isSpeech := ms > d.absThr && ms > floor*math.Pow(10, d.o.NoiseMargin/10)

	beepEnded, beepHz, beepLen := d.beep(x, energy, ms > d.absThr)

	if !d.decided {
		d.cadence(isSpeech)
		if !d.decided && beepEnded {
			d.decide(Machine, ReasonBeep)
		}
	} else {
		if isSpeech {
			d.lastSpeechAt = d.blocks
		}
		if beepEnded && d.res.Verdict != Machine && d.blocks <= d.decidedAt+d.blocksOf(d.o.LateBeep) && d.o.LateBeep > 0 {
			first := d.decidedAt
			d.decide(Machine, ReasonBeep)
			d.decidedAt = first
			d.res.Revised = true
		}
	}
	if d.decided && d.res.Verdict == Machine && d.o.WaitForBeep && !d.cued {
		switch {
		case beepEnded:
			d.cue = Cue{Reason: CueBeep, At: d.Heard(), BeepHz: beepHz, BeepLength: beepLen}
			d.cued = true
		case d.toneBlocks == 0 && d.blocks-d.lastSpeechAt >= d.blocksOf(d.o.MessageSilence):
			d.cue = Cue{Reason: CueSilence, At: d.Heard()}
			d.cued = true
		case d.blocks >= d.blocksOf(d.o.BeepTimeout):
			d.cue = Cue{Reason: CueTimeout, At: d.Heard()}
			d.cued = true
		}
	}
}

// cadence applies the speech and silence rules to one block.
func (d *Detector) cadence(isSpeech bool) {
	o := d.o
	if isSpeech {
		d.speech++
		d.run++
		d.silence = 0
		d.lastSpeechAt = d.blocks
		if !d.inWord && d.run >= d.blocksOf(o.MinWordLength) {
			d.inWord = true
			d.words++
			if d.firstSpeech < 0 {
				d.firstSpeech = d.blocks - d.run
			}
			if d.words > o.MaxWords {
				d.decide(Machine, ReasonMaxWords)
				return
			}
		}
		if d.firstSpeech >= 0 && d.speech >= d.blocksOf(o.Greeting) {
			d.decide(Machine, ReasonLongGreeting)
			return
		}
		if d.run >= d.blocksOf(o.MaxWordLength) {
			d.decide(Machine, ReasonMaxWordLength)
			return
		}
	} else {
		d.silence++
		if d.silence >= d.blocksOf(o.BetweenWordsSilence) {
			d.inWord = false
			d.run = 0
		}
		if d.words > 0 && d.silence >= d.blocksOf(o.AfterGreetingSilence) {
			d.decide(Human, ReasonHuman)
			return
		}
		if d.words == 0 && d.blocks >= d.blocksOf(o.InitialSilence) {
			if o.SilenceIsMachine {
				d.decide(Machine, ReasonNoSpeech)
			} else {
				d.decide(Unknown, ReasonNoSpeech)
			}
			return
		}
	}
	if d.blocks >= d.blocksOf(o.TotalAnalysis) {
		d.decide(Unknown, ReasonTooLong)
	}
}

func (d *Detector) decide(v Verdict, r Reason) {
	d.decided, d.decidedAt = true, d.blocks
	d.res = Result{Verdict: v, Reason: r, After: d.Heard(), Speech: d.dur(d.speech), Words: d.words}
	if d.firstSpeech >= 0 {
		d.res.FirstSpeech = d.dur(d.firstSpeech)
	}
	if v == Machine && r == ReasonBeep {
		// The beep that decided it is also the cue.
		d.lastSpeechAt = d.blocks
	}
}

// beep follows tonal blocks; it reports a beep that ended with this block.
func (d *Detector) beep(x []int16, energy float64, loud bool) (ended bool, hz float64, length time.Duration) {
	tonal, f := false, 0.0
	if loud {
		tonal, f = d.tone(x, energy)
	}
	if tonal && d.toneBlocks > 0 && math.Abs(f-d.toneHz) <= max(25, 0.02*d.toneHz) {
		d.toneBlocks++
		return false, 0, 0
	}
	// The run (if any) ended before this block.
	if d.toneBlocks > 0 && d.dur(d.toneBlocks) >= d.o.MinBeep {
		ended, hz, length = true, d.toneHz, d.dur(d.toneBlocks)
	}
	d.toneBlocks, d.toneHz = 0, 0
	if tonal {
		d.toneBlocks, d.toneHz = 1, f
	}
	return ended, hz, length
}

// tone finds the strongest frequency of the block in the beep band and
// whether it holds BeepPurity of the block's power.
func (d *Detector) tone(x []int16, energy float64) (bool, float64) {
	best, bestHz := 0.0, 0.0
	for _, g := range d.grid {
		if p := g.power(x); p > best {
			best, bestHz = p, g.hz
		}
	}
	centre := bestHz
	for i, off := range [4]float64{-25, -12.5, 12.5, 25} {
		d.refine[i] = newGoertzel(centre+off, d.o.SampleRate)
		if p := d.refine[i].power(x); p > best {
			best, bestHz = p, centre+off
		}
	}
	// A sine of amplitude A gives |X|² ≈ (A·N/2)² and energy A²·N/2.
	purity := 2 * best / (float64(len(x)) * energy)
	return purity >= d.o.BeepPurity && bestHz >= beepLowHz && bestHz <= beepHighHz, bestHz
}
