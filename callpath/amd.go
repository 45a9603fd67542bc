package callpath

import (
	"sync"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/amd"
)

// Answering-machine detection on an outbound call: a Peer in front of the
// agent that listens to the first seconds of the answered call (media/amd: the
// cadence of speech and silence, and the beep) before the agent may speak, so
// the agent neither greets a voicemail box nor answers its greeting.

// Machine-detection modes (the API's machine_detection).
const (
	AMDOff    = "off"
	AMDDetect = "detect" // hold the agent until the verdict; record it; the call goes on either way
	AMDHangup = "hangup" // as detect, and a machine ends the call (machine_detected)
)

// MachineDetected is the end reason of a call hung up on a machine.
const MachineDetected Reason = "machine_detected"

// AMDOptions configure MachineDetection.
type AMDOptions struct {
	Mode string // AMDDetect or AMDHangup
	// OnResult is told the verdict (and a late beep's revision) once, each,
	// off the media goroutine.
	OnResult func(amd.Result)
	// Fallback starts the agent with an unknown verdict when no verdict came
	// this long after the answer (the callee sends no audio); default 7 s.
	Fallback time.Duration
}

// amdPeer holds the agent until the detector's verdict.
type amdPeer struct {
	Peer // the agent
	o    AMDOptions
	det  *amd.Detector

	mu       sync.Mutex
	line     Line
	started  bool // the agent was started
	decided  bool
	revised  bool
	listen   bool // still feeding the detector
	fallback *time.Timer
	closed   bool
}

// MachineDetection puts answering-machine detection in front of agent.
func MachineDetection(agent Peer, o AMDOptions) (Peer, error) {
	rate := 8000
	if agent.Format() == media.FormatPCM16k {
		rate = 16000
	}
	det, err := amd.New(amd.Options{SampleRate: rate})
	if err != nil {
		return nil, err
	}
	if o.Fallback <= 0 {
		o.Fallback = 7 * time.Second
	}
	return &amdPeer{Peer: agent, o: o, det: det, listen: true}, nil
}

// Start implements Peer: the agent waits for the verdict.
func (p *amdPeer) Start(line Line) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line = line
	p.fallback = time.AfterFunc(p.o.Fallback, func() {
		p.mu.Lock()
		if p.decided || p.closed {
			p.mu.Unlock()
			return
		}
		p.decided = true
		p.mu.Unlock()
		p.verdict(amd.Result{Verdict: amd.Unknown, Reason: amd.ReasonTooLong, After: p.o.Fallback})
	})
	return nil
}

// OnAudio implements Peer: the callee's audio goes to the detector until it is
// done, and to the agent once it was started.
func (p *amdPeer) OnAudio(f media.Frame) {
	p.mu.Lock()
	if p.listen {
		if f.PCM != nil {
			p.det.Write(f.PCM)
		} else {
			p.det.WriteULaw(f.Audio)
		}
		res, ok := p.det.Result()
		var decide, revise bool
		if ok && !p.decided {
			p.decided, decide = true, true
		}
		if ok && res.Revised && !p.revised {
			p.revised, revise = true, true
		}
		if p.det.Done() {
			p.listen = false
		}
		started := p.started
		p.mu.Unlock()
		if decide || revise {
			p.async(func() { p.verdict(res) }) // not on the media goroutine: it may start the agent or write the record
		}
		if started {
			p.Peer.OnAudio(f)
		}
		return
	}
	started := p.started
	p.mu.Unlock()
	if started {
		p.Peer.OnAudio(f)
	}
}

// OnDigit implements Peer.
func (p *amdPeer) OnDigit(d media.Digit) {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if started {
		p.Peer.OnDigit(d)
	}
}

// async runs f on the call's tracked goroutines when the line has them (a
// *Call: its supervisor waits for them), else on its own.
func (p *amdPeer) async(f func()) {
	p.mu.Lock()
	line := p.line
	p.mu.Unlock()
	if g, ok := line.(interface{ Go(func()) bool }); ok {
		g.Go(f)
		return
	}
	go f()
}

// verdict acts on a verdict or a late beep's revision.
func (p *amdPeer) verdict(res amd.Result) {
	if p.o.OnResult != nil {
		p.o.OnResult(res)
	}
	p.mu.Lock()
	if p.fallback != nil {
		p.fallback.Stop()
	}
	line, closed := p.line, p.closed
	if res.Verdict == amd.Machine && p.o.Mode == AMDHangup {
		p.mu.Unlock()
		if line != nil && !closed {
			if res.Revised {
				line.Flush() // the agent had started on a short greeting
			}
			line.Hangup(MachineDetected)
		}
		return
	}
	start := !p.started && !closed && line != nil
	p.started = p.started || start
	p.mu.Unlock()
	if start {
		if err := p.Peer.Start(line); err != nil {
			line.Hangup(Internal)
		}
	}
}

// Close implements Peer.
func (p *amdPeer) Close(r Reason) {
	p.mu.Lock()
	p.closed = true
	if p.fallback != nil {
		p.fallback.Stop()
	}
	p.mu.Unlock()
	p.Peer.Close(r)
}

// AMDMetadata is a verdict as conversations record it (metadata_.machine_detection).
func AMDMetadata(mode string, res amd.Result) map[string]any {
	m := map[string]any{"mode": mode, "result": string(res.Verdict), "reason": string(res.Reason),
		"after_ms": res.After.Milliseconds(), "words": res.Words, "speech_ms": res.Speech.Milliseconds()}
	if res.Revised {
		m["revised"] = true
	}
	return map[string]any{"machine_detection": m}
}
