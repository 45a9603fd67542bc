package callpath

import (
	"context"
	"math"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/amd"
)

// amdAgent records whether it was started and what audio reached it.
type amdAgent struct {
	started chan struct{}
	frames  int
}

func (a *amdAgent) Format() media.Format  { return media.FormatULaw8k }
func (a *amdAgent) Start(Line) error      { close(a.started); return nil }
func (a *amdAgent) OnAudio(media.Frame)   { a.frames++ }
func (a *amdAgent) OnDigit(media.Digit)   {}
func (a *amdAgent) Done() <-chan struct{} { return nil }
func (a *amdAgent) End() End              { return End{} }
func (a *amdAgent) Close(Reason)          {}

// amdLine records a hang-up.
type amdLine struct{ hungUp chan Reason }

func (l *amdLine) Play([]byte) error                            { return nil }
func (l *amdLine) Flush() int                                   { return 0 }
func (l *amdLine) Drained() <-chan struct{}                     { return drainedNow }
func (l *amdLine) Queued() int                                  { return 0 }
func (l *amdLine) AnsweredAt() time.Time                        { return time.Time{} }
func (l *amdLine) Hangup(r Reason)                              { l.hungUp <- r }
func (l *amdLine) Transfer(context.Context, string, bool) error { return ErrNoTransfer }

// drainedNow: the fake line plays what it is given at once.
var drainedNow = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// frames feeds n 20 ms µ-law frames made by gen.
func feed(p Peer, n int, gen func() byte) {
	buf := make([]byte, 160)
	for i := 0; i < n; i++ {
		for j := range buf {
			buf[j] = gen()
		}
		p.OnAudio(media.Frame{Audio: buf})
	}
}

// TestMachineDetectionPeer: the agent is held until the verdict; a long loud
// "greeting" is a machine (hangup mode ends the call, the agent never starts);
// silence is unknown and the agent starts; no audio at all starts the agent at
// the fallback.
func TestMachineDetectionPeer(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	noise := func() byte { return byte(rng.Intn(0x40)) } // µ-law codes near 0x00 are loud
	silence := func() byte { return 0xff }
	results := make(chan amd.Result, 4)
	onResult := func(r amd.Result) { results <- r }

	t.Run("machine, hangup", func(t *testing.T) {
		a := &amdAgent{started: make(chan struct{})}
		p, _ := MachineDetection(a, AMDOptions{Mode: AMDHangup, OnResult: onResult})
		line := &amdLine{hungUp: make(chan Reason, 1)}
		_ = p.Start(line)
		for i := 0; i < 8; i++ { // a long greeting: words of 300 ms with short pauses
			feed(p, 15, noise)
			feed(p, 3, silence)
		}
		select {
		case r := <-line.hungUp:
			if r != MachineDetected {
				t.Fatalf("hung up with %s", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no hang-up on a machine")
		}
		if res := <-results; res.Verdict != amd.Machine {
			t.Fatalf("verdict %v", res)
		}
		select {
		case <-a.started:
			t.Fatal("the agent started on a machine")
		default:
		}
		if a.frames != 0 {
			t.Fatalf("the agent heard %d frames", a.frames)
		}
		p.Close(MachineDetected)
	})
	t.Run("silence, detect: unknown, then the agent", func(t *testing.T) {
		a := &amdAgent{started: make(chan struct{})}
		p, _ := MachineDetection(a, AMDOptions{Mode: AMDDetect, OnResult: onResult})
		_ = p.Start(&amdLine{hungUp: make(chan Reason, 1)})
		feed(p, 100, silence) // 2 s: not decided yet
		select {
		case <-a.started:
			t.Fatal("the agent started before the verdict")
		default:
		}
		feed(p, 30, silence) // past 2.5 s
		if res := <-results; res.Verdict != amd.Unknown || res.Reason != amd.ReasonNoSpeech {
			t.Fatalf("verdict %v", res)
		}
		<-a.started
		p.Close(CallerHangup)
	})
	t.Run("no audio: the fallback starts the agent", func(t *testing.T) {
		a := &amdAgent{started: make(chan struct{})}
		p, _ := MachineDetection(a, AMDOptions{Mode: AMDHangup, OnResult: onResult, Fallback: 50 * time.Millisecond})
		_ = p.Start(&amdLine{hungUp: make(chan Reason, 1)})
		<-a.started
		if res := <-results; res.Verdict != amd.Unknown {
			t.Fatalf("verdict %v", res)
		}
		p.Close(CallerHangup)
	})
}

// vmPeer is a message's peer: at Start it plays its message (three 20 ms
// frames) and records when it started.
type vmPeer struct {
	started chan struct{}
	closed  chan Reason
	done    chan struct{}
}

func (m *vmPeer) Format() media.Format { return media.FormatULaw8k }
func (m *vmPeer) Start(l Line) error {
	close(m.started)
	for i := 0; i < 3; i++ {
		_ = l.Play(make([]byte, 160))
	}
	return nil
}
func (m *vmPeer) OnAudio(media.Frame)   { panic("the message's peer must not hear the machine") }
func (m *vmPeer) OnDigit(media.Digit)   {}
func (m *vmPeer) Done() <-chan struct{} { return m.done }
func (m *vmPeer) End() End              { return End{} }
func (m *vmPeer) Close(r Reason)        { m.closed <- r }

// closingAgent is an agent whose Close ends it (as a bridge.Session's does).
type closingAgent struct {
	amdAgent
	done   chan struct{}
	once   sync.Once
	closed chan Reason
}

func (a *closingAgent) Done() <-chan struct{} { return a.done }
func (a *closingAgent) End() End              { return End{Reason: AgentHangup} }
func (a *closingAgent) hangup()               { a.once.Do(func() { close(a.done) }) }
func (a *closingAgent) Close(r Reason)        { a.hangup(); a.closed <- r }

// pcmFeed feeds d of 20 ms PCM frames made by gen(sample index).
func pcmFeed(p Peer, d time.Duration, gen func(n int) int16) {
	for f := 0; f < int(d/(20*time.Millisecond)); f++ {
		pcm := make([]int16, 160)
		for i := range pcm {
			pcm[i] = gen(f*160 + i)
		}
		p.OnAudio(media.Frame{PCM: pcm})
	}
}

// TestLeaveMessagePeer: leave_message on a machine closes the agent unstarted
// (the call goes on: the peer's own Done stays open), dials the message's peer
// during the greeting, starts it only at the cue — the end of the beep — and
// hangs up voicemail_left once its audio has played; the report says so.
func TestLeaveMessagePeer(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	speech := func(n int) int16 { // bursts of noise: words of 300 ms, 60 ms apart
		if n%2880 >= 2400 {
			return 0
		}
		return int16(rng.Intn(16000) - 8000)
	}
	quiet := func(int) int16 { return 0 }
	beep := func(n int) int16 { return int16(8000 * math.Sin(2*math.Pi*1000*float64(n)/8000)) }

	a := &closingAgent{amdAgent: amdAgent{started: make(chan struct{})}, done: make(chan struct{}), closed: make(chan Reason, 1)}
	msg := &vmPeer{started: make(chan struct{}), closed: make(chan Reason, 1), done: make(chan struct{})}
	dialled := make(chan struct{})
	reports := make(chan VoicemailReport, 2)
	p, err := MachineDetection(a, AMDOptions{Mode: AMDLeaveMessage, MessageQuiet: 50 * time.Millisecond,
		Message:   func(context.Context) (Peer, error) { close(dialled); return msg, nil },
		OnMessage: func(r VoicemailReport) { reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	line := &amdLine{hungUp: make(chan Reason, 1)}
	_ = p.Start(line)
	pcmFeed(p, 3*time.Second, speech) // a long greeting: machine after 1.5 s of speech
	<-dialled
	if r := <-a.closed; r != MachineDetected {
		t.Fatalf("agent closed with %s", r)
	}
	select {
	case <-a.started:
		t.Fatal("the agent started on a machine")
	default:
	}
	select {
	case <-p.Done():
		t.Fatal("closing the agent ended the call")
	default:
	}
	pcmFeed(p, 400*time.Millisecond, quiet) // less than the 2 s that would cue without a beep
	select {
	case <-msg.started:
		t.Fatal("the message started before the beep")
	default:
	}
	pcmFeed(p, 500*time.Millisecond, beep)
	pcmFeed(p, 100*time.Millisecond, quiet) // the beep ends
	select {
	case <-msg.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the message did not start after the beep")
	}
	select {
	case r := <-line.hungUp:
		if r != VoicemailLeft {
			t.Fatalf("hung up with %s", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no hang-up once the message had played")
	}
	r := <-reports
	if !r.Left || r.Cue.Reason != amd.CueBeep || r.Played != 60*time.Millisecond || r.Err != nil {
		t.Fatalf("report %+v", r)
	}
	if hz := r.Cue.BeepHz; hz < 980 || hz > 1020 {
		t.Fatalf("beep at %v Hz", hz)
	}
	if r.Cue.At < 3400*time.Millisecond || r.Cue.At > 4000*time.Millisecond {
		t.Fatalf("cue at %v: the beep ended at 3.9 s of audio", r.Cue.At)
	}
	p.Close(VoicemailLeft)
	if cr := <-msg.closed; cr != VoicemailLeft {
		t.Fatalf("message peer closed with %s", cr)
	}
	select {
	case <-a.closed:
		t.Fatal("the agent closed twice")
	default:
	}
}

// TestLeaveMessageHuman: a person gets the agent, and no message report.
func TestLeaveMessageHuman(t *testing.T) {
	a := &closingAgent{amdAgent: amdAgent{started: make(chan struct{})}, done: make(chan struct{}), closed: make(chan Reason, 1)}
	reports := make(chan VoicemailReport, 1)
	p, _ := MachineDetection(a, AMDOptions{Mode: AMDLeaveMessage, OnResult: func(r amd.Result) { t.Logf("verdict %v", r) },
		Message: func(context.Context) (Peer, error) {
			t.Error("a message dialled for a person")
			return nil, context.Canceled
		},
		OnMessage: func(r VoicemailReport) { reports <- r }})
	_ = p.Start(&amdLine{hungUp: make(chan Reason, 1)})
	rng := rand.New(rand.NewSource(3))
	pcmFeed(p, 200*time.Millisecond, func(int) int16 { return 0 })                             // the line's floor
	pcmFeed(p, 400*time.Millisecond, func(int) int16 { return int16(rng.Intn(16000) - 8000) }) // "Hello?"
	pcmFeed(p, 1200*time.Millisecond, func(int) int16 { return 0 })
	select {
	case <-a.started:
	case <-time.After(5 * time.Second): // the fallback (7 s) would start it too: not a person's verdict
		t.Fatal("the agent did not start for a person")
	}
	a.hangup() // the agent ends the call (end_call)
	select {
	case <-p.Done():
		if e := p.End(); e.Reason != AgentHangup {
			t.Fatalf("ended %s", e.Reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's end did not end the call")
	}
	p.Close(AgentHangup)
	<-a.closed
	select {
	case r := <-reports:
		t.Fatalf("a message report for a person: %+v", r)
	default:
	}
}

// TestLeaveMessageLateBeep: a short greeting ("Please leave a message.")
// sounds like a person, so the agent starts; its beep, within LateBeep, revises
// the verdict to machine: the agent's audio is cut and its session closed, and
// the message starts at once (the beep's end was the cue).
func TestLeaveMessageLateBeep(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	a := &closingAgent{amdAgent: amdAgent{started: make(chan struct{})}, done: make(chan struct{}), closed: make(chan Reason, 1)}
	msg := &vmPeer{started: make(chan struct{}), closed: make(chan Reason, 1), done: make(chan struct{})}
	reports := make(chan VoicemailReport, 1)
	p, _ := MachineDetection(a, AMDOptions{Mode: AMDLeaveMessage, MessageQuiet: 50 * time.Millisecond,
		Message:   func(context.Context) (Peer, error) { return msg, nil },
		OnMessage: func(r VoicemailReport) { reports <- r }})
	line := &flushLine{amdLine: amdLine{hungUp: make(chan Reason, 1)}}
	_ = p.Start(line)
	pcmFeed(p, 200*time.Millisecond, func(int) int16 { return 0 })
	pcmFeed(p, 600*time.Millisecond, func(int) int16 { return int16(rng.Intn(16000) - 8000) })
	pcmFeed(p, 1000*time.Millisecond, func(int) int16 { return 0 }) // human after 0.8 s of silence
	select {
	case <-a.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent did not start on the short greeting")
	}
	pcmFeed(p, 400*time.Millisecond, func(n int) int16 { return int16(8000 * math.Sin(2*math.Pi*800*float64(n)/8000)) })
	pcmFeed(p, 100*time.Millisecond, func(int) int16 { return 0 })
	if r := <-a.closed; r != MachineDetected {
		t.Fatalf("agent closed with %s", r)
	}
	select {
	case <-msg.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the message did not start after the late beep")
	}
	if r := <-line.hungUp; r != VoicemailLeft {
		t.Fatalf("hung up with %s", r)
	}
	if r := <-reports; !r.Left || r.Cue.Reason != amd.CueBeep || line.flushes.Load() != 1 {
		t.Fatalf("report %+v, %d flushes", r, line.flushes.Load())
	}
	p.Close(VoicemailLeft)
	<-msg.closed
}

// flushLine counts flushes.
type flushLine struct {
	amdLine
	flushes atomic.Int32
}

func (l *flushLine) Flush() int { l.flushes.Add(1); return 0 }
