package simaudio

import (
	"math"
	"time"
)

// The caller's utterances are found by energy, on audio time (the samples
// received), so a test can send audio faster than real time and get the same
// answers as a real-time caller.
const (
	detectFrame     = 10 * time.Millisecond  // energy is measured per frame
	speechLevelDBFS = -40.0                  // RMS above this is speech
	minSpeech       = 100 * time.Millisecond // shorter bursts are blips, ignored
	endSilence      = 500 * time.Millisecond // silence that ends an utterance
)

// Detector finds utterances in the caller's PCM. It keeps the utterance's audio
// (at most maxEchoLength of it) for the echo, in a buffer it reuses.
type Detector struct {
	frameLen  int     // samples per frame
	frame     []int16 // the frame being filled
	threshold int64   // a frame whose sum of squares is above this is speech
	minFrames int     // speech frames before an utterance counts
	endFrames int     // silent frames that end it
	total     int64   // samples fed: the caller's audio clock (Total)
	pos       int64   // samples in complete frames

	voiced     int   // consecutive speech frames before the utterance counts
	speaking   bool  // in a confirmed utterance
	silent     int   // consecutive silent frames in it
	start      int64 // where it began (samples)
	lastVoiced int64 // where its last speech frame ended
	utt        []int16
	maxUtt     int

	onStart func(pos int64)                  // an utterance began (confirmed at pos)
	onEnd   func(samples int64, pcm []int16) // it ended: its length and audio, valid during the call only
}

// NewDetector is a detector of audio at rate: onStart is called when an
// utterance is confirmed (at the sample position given), onEnd when it ends
// (its length in samples and its audio, valid during the call only).
func NewDetector(rate int, onStart func(int64), onEnd func(int64, []int16)) *Detector {
	n := rate * int(detectFrame/time.Millisecond) / 1000
	rms := 32768 * math.Pow(10, speechLevelDBFS/20)
	return &Detector{
		frameLen: n, frame: make([]int16, 0, n),
		threshold: int64(rms * rms * float64(n)),
		minFrames: int(minSpeech / detectFrame), endFrames: int(endSilence / detectFrame),
		maxUtt:  rate * int(MaxEchoLength/time.Second),
		onStart: onStart, onEnd: onEnd,
	}
}

// Feed runs the detector over pcm; the callbacks run before it returns.
func (d *Detector) Feed(pcm []int16) {
	d.total += int64(len(pcm))
	for len(pcm) > 0 {
		k := len(d.frame)
		n := copy(d.frame[k:d.frameLen], pcm)
		d.frame = d.frame[:k+n]
		pcm = pcm[n:]
		if len(d.frame) == d.frameLen {
			d.endFrame()
			d.frame = d.frame[:0]
		}
	}
}

func (d *Detector) endFrame() {
	var sum int64
	for _, v := range d.frame {
		sum += int64(v) * int64(v)
	}
	voiced := sum > d.threshold
	at := d.pos
	d.pos += int64(d.frameLen)
	if !d.speaking {
		if !voiced {
			d.voiced = 0
			return
		}
		if d.voiced == 0 {
			d.start, d.utt = at, d.utt[:0]
		}
		d.voiced++
		d.keep()
		d.lastVoiced = d.pos
		if d.voiced >= d.minFrames {
			d.speaking, d.silent = true, 0
			d.onStart(d.pos)
		}
		return
	}
	d.keep()
	if voiced {
		d.silent, d.lastVoiced = 0, d.pos
		return
	}
	if d.silent++; d.silent < d.endFrames {
		return
	}
	n := d.lastVoiced - d.start
	d.speaking, d.voiced = false, 0
	d.onEnd(n, d.utt[:min(int64(len(d.utt)), n)])
	d.utt = d.utt[:0]
}

// keep adds the frame to the utterance's audio, up to maxUtt samples.
func (d *Detector) keep() {
	if room := d.maxUtt - len(d.utt); room > 0 {
		d.utt = append(d.utt, d.frame[:min(room, len(d.frame))]...)
	}
}

// Total is how many samples were fed: the caller's audio clock.
func (d *Detector) Total() int64 { return d.total }
