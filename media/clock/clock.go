// Package clock is the timing wheel shared by every call: one tick source that
// drives each call's outbound pacer, jitter-buffer playout and RTCP timers.
//
// Timers are intrusive: a Timer is a field of the caller's struct, and
// scheduling it neither allocates nor starts a goroutine. The wheel is
// sharded over GOMAXPROCS goroutines; a Timer is bound to one shard for its
// life, so all timers of one call (initialised on the same Shard) run on the
// same goroutine, one at a time. Callbacks run on the shard goroutine and must
// not block.
//
// The time source is a Clock. Real uses the system clock; Manual is advanced
// by a test, and a Wheel driven by a Manual runs its callbacks inside
// Manual.Advance, so pacing logic is tested without sleeping.
package clock

import (
	"sync"
	"time"
)

// Clock is a time source.
type Clock interface {
	Now() time.Time
}

// Real is the system clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// driver is implemented by clocks that drive a wheel themselves (Manual)
// instead of letting it run its own goroutines.
type driver interface {
	attach(w *Wheel)
	detach(w *Wheel)
}

// Manual is a clock for tests: time stands still until Advance moves it.
// A Wheel using a Manual runs no goroutines; Advance runs every timer that
// falls due, in time order, on the caller's goroutine, and returns when they
// have all run.
type Manual struct {
	advMu  sync.Mutex // serialises Advance
	mu     sync.Mutex
	now    time.Time
	wheels []*Wheel
	run    []*Wheel // scratch for Advance, guarded by advMu
}

// NewManual returns a manual clock reading start.
func NewManual(start time.Time) *Manual { return &Manual{now: start} }

// Now returns the clock's current time.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Advance moves the clock forward by d, one wheel tick at a time, running the
// timers of every started wheel driven by m as they fall due.
func (m *Manual) Advance(d time.Duration) {
	m.advMu.Lock()
	defer m.advMu.Unlock()
	m.mu.Lock()
	end := m.now.Add(d)
	m.mu.Unlock()
	for {
		m.mu.Lock()
		// Step by the smallest resolution of the attached wheels so that
		// callbacks observe Now() at their tick.
		step := time.Duration(0)
		for _, w := range m.wheels {
			if step == 0 || w.res < step {
				step = w.res
			}
		}
		if step == 0 {
			m.now = end
			m.mu.Unlock()
			return
		}
		next := m.now.Add(step)
		if next.After(end) {
			next = end
		}
		m.now = next
		m.run = append(m.run[:0], m.wheels...)
		m.mu.Unlock()
		for _, w := range m.run {
			w.runDue(next)
		}
		if !next.Before(end) {
			return
		}
	}
}

func (m *Manual) attach(w *Wheel) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wheels = append(m.wheels, w)
}

func (m *Manual) detach(w *Wheel) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.wheels {
		if x == w {
			m.wheels = append(m.wheels[:i], m.wheels[i+1:]...)
			return
		}
	}
}
