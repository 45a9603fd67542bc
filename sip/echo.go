package sip

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
)

// echoPeer is the far side of the echo test line: every frame the caller sends is
// played back to them, through the whole media path (jitter buffer, decode, encode,
// pacer). Operators use it to check a trunk's audio; tests use it to measure the
// media engine alone.
//
// A wideband call (G.722, Opus) is echoed at 16 kHz: what the caller hears back
// is HD too.
type echoPeer struct {
	call   atomic.Pointer[callRef]
	done   chan struct{}
	once   sync.Once
	format atomic.Int32 // media.Format
}

type callRef struct{ callpath.Line }

func newEchoPeer() *echoPeer {
	e := &echoPeer{done: make(chan struct{})}
	e.format.Store(int32(media.FormatULaw8k))
	return e
}

// setFormat makes the echo 16 kHz for a wideband codec.
func (e *echoPeer) setFormat(c sdp.Codec) {
	if strings.EqualFold(c.Name, "G722") || strings.EqualFold(c.Name, "opus") {
		e.format.Store(int32(media.FormatPCM16k))
	} else {
		e.format.Store(int32(media.FormatULaw8k))
	}
}

func (e *echoPeer) Format() media.Format { return media.Format(e.format.Load()) }

func (e *echoPeer) Start(c callpath.Line) error {
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

func (e *echoPeer) End() callpath.End { return callpath.End{Reason: callpath.CallerHangup} }

func (e *echoPeer) Close(callpath.Reason) { e.once.Do(func() { e.call.Store(nil) }) }
