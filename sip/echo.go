package sip

import (
	"sync"
	"sync/atomic"

	"github.com/cxco/gateway/media"
)

// echoPeer is the far side of the echo test line: every frame the caller sends is
// played back to them, through the whole media path (jitter buffer, decode, encode,
// pacer). Operators use it to check a trunk's audio; tests use it to measure the
// media engine alone.
type echoPeer struct {
	call atomic.Pointer[callRef]
	done chan struct{}
	once sync.Once
}

type callRef struct{ Call }

func newEchoPeer() *echoPeer { return &echoPeer{done: make(chan struct{})} }

func (e *echoPeer) Format() media.Format { return media.FormatULaw8k }

func (e *echoPeer) Start(c Call) error {
	e.call.Store(&callRef{c})
	return nil
}

func (e *echoPeer) OnAudio(f media.Frame) {
	if c := e.call.Load(); c != nil {
		_ = c.Play(f.Audio)
	}
}

func (e *echoPeer) OnDigit(media.Digit) {}

// Done is never closed by the echo line itself: the caller ends the call.
func (e *echoPeer) Done() <-chan struct{} { return e.done }

func (e *echoPeer) End() PeerEnd { return PeerEnd{Reason: EndCallerHangup} }

func (e *echoPeer) Close(string) { e.once.Do(func() { e.call.Store(nil) }) }
