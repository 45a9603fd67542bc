package callpath

import (
	"context"
	"errors"
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
	// AMDLeaveMessage: as detect, and to a machine the agent says the
	// voicemail message once the box is ready to record (after its beep), then
	// the call hangs up (voicemail_left).
	AMDLeaveMessage = "leave_message"
)

// MachineDetected is the end reason of a call hung up on a machine.
const MachineDetected Reason = "machine_detected"

// AMDOptions configure MachineDetection.
type AMDOptions struct {
	Mode string // AMDDetect, AMDHangup or AMDLeaveMessage
	// OnResult is told the verdict (and a late beep's revision) once, each,
	// off the media goroutine.
	OnResult func(amd.Result)
	// Fallback starts the agent with an unknown verdict when no verdict came
	// this long after the answer (the callee sends no audio); default 7 s.
	Fallback time.Duration

	// leave_message only.
	//
	// Message opens the peer that says the voicemail message and nothing else
	// (a provider session with Info.Message set). It is called once, at the
	// machine verdict, while the greeting still plays; the agent's own session,
	// opened while the phone rang and never started, is closed then.
	Message func(ctx context.Context) (Peer, error)
	// OnMessage is told, once, how the message went, off the media goroutine.
	OnMessage func(VoicemailReport)
	// CueFallback starts the message this long after the machine verdict when
	// the detector found no cue (the callee's audio stopped coming: the
	// detector's own BeepTimeout needs audio); default 25 s.
	CueFallback time.Duration
	// MessageQuiet: the message has played once everything queued was sent
	// and the provider sent no audio for this long; default 1 s.
	MessageQuiet time.Duration
	// MessageLimit bounds the message from its start (a provider that keeps
	// talking); the call then hangs up as voicemail_left; default 60 s.
	MessageLimit time.Duration
}

// VoicemailReport is how a leave_message call's message went
// (metadata_.machine_detection.voicemail).
type VoicemailReport struct {
	// Cue is the detector's cue to start (beep, silence or timeout); Fallback
	// is set when none came and CueFallback started the message.
	Cue      amd.Cue
	Fallback bool
	// StartedAt is when the message started, from the answer (wall clock);
	// Played how much of it was sent to the callee. Left: it played to its end
	// (or to MessageLimit).
	StartedAt time.Duration
	Played    time.Duration
	Left      bool
	Err       error
}

// Metadata is the report as conversations record it.
func (r VoicemailReport) Metadata() map[string]any {
	m := map[string]any{"left": r.Left, "played_ms": r.Played.Milliseconds()}
	if r.Cue.Reason != "" {
		m["cue"] = string(r.Cue.Reason)
		m["cue_at_ms"] = r.Cue.At.Milliseconds()
	}
	if r.Cue.Reason == amd.CueBeep {
		m["beep_hz"] = int(r.Cue.BeepHz + 0.5)
		m["beep_ms"] = r.Cue.BeepLength.Milliseconds()
	}
	if r.Fallback {
		m["cue"] = "no_audio"
	}
	if r.StartedAt > 0 {
		m["started_at_ms"] = r.StartedAt.Milliseconds()
	}
	if r.Err != nil {
		m["error"] = r.Err.Error()
	}
	return map[string]any{"machine_detection": map[string]any{"voicemail": m}}
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

	// leave_message: the peer's own Done and End (the agent is swapped for
	// the message's peer at a machine verdict), and the message's state.
	vm *voicemail
}

type voicemail struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	end    End
	once   sync.Once
	swap   chan struct{} // cur changed
	quit   chan struct{} // closed by Close
	// watched is closed when watch returns (nil: not started).
	watched chan struct{}
	cur     Peer        // whose Done ends the call: the agent, then the message's peer
	agent   bool        // cur is still the agent
	msg     Peer        // the message's peer, once dialled
	timer   *time.Timer // CueFallback
	cue     amd.Cue
	cued    bool // the cue came (or CueFallback passed)
	begun   bool // the message's peer was started
	report  VoicemailReport
	told    bool // OnMessage was called
}

// MachineDetection puts answering-machine detection in front of agent.
func MachineDetection(agent Peer, o AMDOptions) (Peer, error) {
	rate := 8000
	if agent.Format() == media.FormatPCM16k {
		rate = 16000
	}
	if o.Mode == AMDLeaveMessage && o.Message == nil {
		return nil, errors.New("callpath: leave_message without a Message dialler")
	}
	det, err := amd.New(amd.Options{SampleRate: rate, WaitForBeep: o.Mode == AMDLeaveMessage})
	if err != nil {
		return nil, err
	}
	if o.Fallback <= 0 {
		o.Fallback = 7 * time.Second
	}
	if o.CueFallback <= 0 {
		o.CueFallback = 25 * time.Second
	}
	if o.MessageQuiet <= 0 {
		o.MessageQuiet = time.Second
	}
	if o.MessageLimit <= 0 {
		o.MessageLimit = time.Minute
	}
	p := &amdPeer{Peer: agent, o: o, det: det, listen: true}
	if o.Mode == AMDLeaveMessage {
		ctx, cancel := context.WithCancel(context.Background())
		p.vm = &voicemail{ctx: ctx, cancel: cancel, done: make(chan struct{}), swap: make(chan struct{}, 1),
			quit: make(chan struct{}), cur: agent, agent: true}
	}
	return p, nil
}

// Done implements Peer: the agent's, or with leave_message the peer's own
// (the agent's session is closed at a machine verdict without ending the call).
func (p *amdPeer) Done() <-chan struct{} {
	if p.vm != nil {
		return p.vm.done
	}
	return p.Peer.Done()
}

// End implements Peer.
func (p *amdPeer) End() End {
	if p.vm != nil {
		return p.vm.end
	}
	return p.Peer.End()
}

// Start implements Peer: the agent waits for the verdict.
func (p *amdPeer) Start(line Line) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line = line
	if p.vm != nil && p.vm.watched == nil {
		// Its own goroutine, not the call's (Start runs under Call.Start's
		// lock, which Call.Go takes); Close waits for it.
		p.vm.watched = make(chan struct{})
		go func() {
			defer close(p.vm.watched)
			p.watch()
		}()
	}
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
		var cued bool
		if p.vm != nil && !p.vm.cued {
			if c, ok := p.det.Cue(); ok {
				p.vm.cue, p.vm.cued, cued = c, true, true
			}
		}
		if p.det.Done() {
			p.listen = false
		}
		started := p.started
		p.mu.Unlock()
		if decide || revise {
			p.async(func() { p.verdict(res) }) // not on the media goroutine: it may start the agent or write the record
		}
		if cued {
			p.async(p.startMessage)
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
	if res.Verdict == amd.Machine && p.o.Mode == AMDLeaveMessage {
		p.mu.Unlock()
		p.toMessage(res.Revised)
		return
	}
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
	vm := p.vm
	var cur Peer = p.Peer
	if vm != nil {
		cur = vm.cur // the agent, the message's peer, or none between the two
		vm.cur = nil
		if vm.timer != nil {
			vm.timer.Stop()
		}
		close(vm.quit)
	}
	p.mu.Unlock()
	if vm != nil {
		vm.cancel() // a message's peer being dialled
		p.tell(VoicemailReport{Err: errors.New("the call ended before the message was left")})
	}
	if cur != nil {
		cur.Close(r)
	}
	if vm != nil {
		p.mu.Lock()
		w := vm.watched
		p.mu.Unlock()
		if w != nil {
			<-w
		}
	}
}

// watch ends the call (leave_message's Done) when the peer that serves it now
// ends: the agent (after a human or unknown verdict), or the message's peer.
func (p *amdPeer) watch() {
	vm := p.vm
	for {
		p.mu.Lock()
		cur, agent := vm.cur, vm.agent
		p.mu.Unlock()
		var done <-chan struct{}
		if cur != nil {
			done = cur.Done()
		}
		select {
		case <-done:
			p.mu.Lock()
			still := vm.cur == cur
			p.mu.Unlock()
			if !still {
				continue // swapped out (the agent closed at a machine verdict)
			}
			e := cur.End()
			if !agent && e.Reason != ProviderError {
				e = End{Reason: VoicemailLeft} // the message's provider ended its conversation
			}
			vm.once.Do(func() { vm.end = e; close(vm.done) })
			return
		case <-vm.swap:
		case <-vm.quit:
			return
		}
	}
}

// swapped tells watch that vm.cur changed.
func (vm *voicemail) swapped() {
	select {
	case vm.swap <- struct{}{}:
	default:
	}
}

// toMessage: a machine, with leave_message. The agent's session (never
// started unless a late beep revised a human verdict: then its audio is cut)
// is closed, the message's peer dialled while the greeting plays, and the
// message starts at the cue.
func (p *amdPeer) toMessage(revised bool) {
	vm := p.vm
	p.mu.Lock()
	if p.closed || !vm.agent {
		p.mu.Unlock()
		return
	}
	agent, line, wasStarted := vm.cur, p.line, p.started
	vm.cur, vm.agent, p.started = nil, false, false // the callee's audio goes to no one now
	vm.swapped()
	vm.timer = time.AfterFunc(p.o.CueFallback, func() {
		p.mu.Lock()
		fell := !vm.cued
		vm.cued = true
		p.mu.Unlock()
		if fell {
			p.mu.Lock()
			vm.report.Fallback = true
			p.mu.Unlock()
			p.async(p.startMessage)
		}
	})
	p.mu.Unlock()
	if wasStarted && revised {
		line.Flush() // the agent had begun its opening line on a short greeting
	}
	agent.Close(MachineDetected)

	msg, err := p.o.Message(vm.ctx)
	p.mu.Lock()
	if err == nil && p.closed {
		p.mu.Unlock()
		msg.Close(MachineDetected)
		return
	}
	if err != nil {
		p.mu.Unlock()
		p.tell(VoicemailReport{Err: err})
		if line != nil && !errors.Is(err, context.Canceled) {
			line.Hangup(VoicemailFailed)
		}
		return
	}
	vm.msg, vm.cur = msg, msg
	vm.swapped()
	ready := vm.cued
	p.mu.Unlock()
	if ready {
		p.startMessage()
	}
}

// startMessage starts the message's peer once both the cue has come and the
// peer is dialled (whichever is last calls it), and hangs up once the message
// has played.
func (p *amdPeer) startMessage() {
	vm := p.vm
	p.mu.Lock()
	if p.closed || vm.msg == nil || !vm.cued || vm.begun {
		p.mu.Unlock()
		return
	}
	vm.begun = true
	msg, line := vm.msg, p.line
	vm.report.Cue = vm.cue
	if vm.timer != nil {
		vm.timer.Stop()
	}
	p.mu.Unlock()
	ml := &messageLine{Line: line, first: make(chan struct{}), perMS: 8}
	if msg.Format() == media.FormatPCM16k {
		ml.perMS = 32
	}
	if at := line.AnsweredAt(); !at.IsZero() {
		p.mu.Lock()
		vm.report.StartedAt = time.Since(at)
		p.mu.Unlock()
	}
	if err := msg.Start(ml); err != nil {
		p.finishMessage(ml, false, err)
		line.Hangup(VoicemailFailed)
		return
	}
	p.async(func() { p.awaitPlayed(ml) })
}

// awaitPlayed hangs up once the message has played: audio came, everything
// queued was sent, and the provider sent nothing more for MessageQuiet (no
// provider marks the end of its audio in a way common to all: ElevenLabs'
// agent_response comes before its audio, OpenAI's response.done after).
func (p *amdPeer) awaitPlayed(ml *messageLine) {
	vm := p.vm
	limit := time.NewTimer(p.o.MessageLimit)
	defer limit.Stop()
	select {
	case <-ml.first:
	case <-limit.C:
		p.finishMessage(ml, false, errors.New("the provider sent no audio for the message"))
		ml.Hangup(VoicemailFailed)
		return
	case <-vm.quit:
		return
	}
	for {
		select {
		case <-ml.Drained():
		case <-limit.C:
			p.finishMessage(ml, true, nil)
			ml.Hangup(VoicemailLeft)
			return
		case <-vm.quit:
			return
		}
		quiet := ml.sinceLast()
		if quiet >= p.o.MessageQuiet && ml.Queued() == 0 {
			break
		}
		t := time.NewTimer(p.o.MessageQuiet - quiet)
		select {
		case <-t.C:
		case <-vm.quit:
			t.Stop()
			return
		}
	}
	p.finishMessage(ml, true, nil)
	ml.Hangup(VoicemailLeft)
}

func (p *amdPeer) finishMessage(ml *messageLine, left bool, err error) {
	p.mu.Lock()
	r := p.vm.report
	p.mu.Unlock()
	r.Left, r.Err, r.Played = left, err, ml.played()
	p.tell(r)
}

// tell gives OnMessage its one report, once a message was due (a machine).
func (p *amdPeer) tell(r VoicemailReport) {
	p.mu.Lock()
	vm := p.vm
	if vm.told || vm.agent {
		p.mu.Unlock()
		return
	}
	vm.told = true
	if r.Cue.Reason == "" {
		r.Cue = vm.cue
	}
	r.Fallback = r.Fallback || vm.report.Fallback
	if r.StartedAt == 0 {
		r.StartedAt = vm.report.StartedAt
	}
	p.mu.Unlock()
	if p.o.OnMessage != nil {
		p.o.OnMessage(r)
	}
}

// messageLine is the call's line as the message's peer sees it: it notes
// when audio was last queued, and how much.
type messageLine struct {
	Line
	first chan struct{}
	mu    sync.Mutex
	last  time.Time
	bytes int
	perMS int // bytes a millisecond in the peer's format
}

func (l *messageLine) Play(audio []byte) error {
	l.mu.Lock()
	if l.last.IsZero() {
		close(l.first)
	}
	l.last = time.Now()
	l.bytes += len(audio)
	l.mu.Unlock()
	return l.Line.Play(audio)
}

func (l *messageLine) sinceLast() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Since(l.last)
}

// played is the message's audio queued, in time.
func (l *messageLine) played() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Duration(l.bytes) * time.Millisecond / time.Duration(l.perMS)
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
