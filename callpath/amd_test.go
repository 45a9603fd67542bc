package callpath

import (
	"context"
	"math/rand"
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
func (l *amdLine) Drained() <-chan struct{}                     { return nil }
func (l *amdLine) Queued() int                                  { return 0 }
func (l *amdLine) AnsweredAt() time.Time                        { return time.Time{} }
func (l *amdLine) Hangup(r Reason)                              { l.hungUp <- r }
func (l *amdLine) Transfer(context.Context, string, bool) error { return ErrNoTransfer }

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
