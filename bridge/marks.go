package bridge

import (
	"sync"
	"time"
)

// marks tell a conversation when the agent audio queued up to a point has
// played (Media Streams' mark): the frames queued since the start are counted,
// and a mark's callback runs once the call has played that many. Barge-in
// (Interrupt) runs every pending callback at once, as the audio they wait for
// will never play.
type marks struct {
	mu      sync.Mutex
	bytes   int64 // agent audio queued since the start
	pending []mark
	wake    chan struct{}
	running bool
}

type mark struct {
	frames int64 // played frames that reach the mark
	fn     func()
}

// onPlayed registers fn: it runs (on the session's marks goroutine) once the
// audio queued so far has played.
func (s *Session) onPlayed(fn func()) {
	m := &s.marks
	fb := int64(frameBytes(s.format))
	m.mu.Lock()
	m.pending = append(m.pending, mark{frames: m.bytes / fb, fn: fn})
	start := !m.running
	m.running = true
	if m.wake == nil {
		m.wake = make(chan struct{}, 1)
	}
	m.mu.Unlock()
	if start && !s.spawn(s.runMarks) {
		return
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// played is how many frames of the agent's audio the call has played.
func (s *Session) played() int64 {
	lb := s.line.Load()
	if lb == nil {
		return 0
	}
	m := &s.marks
	m.mu.Lock()
	total := m.bytes / int64(frameBytes(s.format))
	m.mu.Unlock()
	return total - int64(lb.Queued())
}

// runMarks waits for each mark in turn: a timer for the frames still to play,
// not a tick per frame.
func (s *Session) runMarks() {
	m := &s.marks
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		m.mu.Lock()
		var next *mark
		if len(m.pending) > 0 {
			next = &m.pending[0]
		}
		m.mu.Unlock()
		wait := time.Hour
		if next != nil {
			left := next.frames - s.played()
			if left <= 0 || s.line.Load() != nil && s.line.Load().Queued() == 0 {
				m.mu.Lock()
				fn := m.pending[0].fn
				m.pending = m.pending[1:]
				m.mu.Unlock()
				fn()
				continue
			}
			wait = time.Duration(left) * 20 * time.Millisecond
		}
		t.Reset(wait)
		select {
		case <-s.stop:
			return
		case <-m.wake:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// clearMarks runs every pending mark's callback now (barge-in).
func (s *Session) clearMarks() {
	m := &s.marks
	m.mu.Lock()
	list := m.pending
	m.pending = nil
	m.mu.Unlock()
	for _, mk := range list {
		mk.fn()
	}
}
