package clock

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestManualFiresInOrder(t *testing.T) {
	tests := []struct {
		name    string
		offsets []time.Duration
		advance time.Duration
		want    []time.Duration // fire times, relative to t0
	}{
		{"single", []time.Duration{20 * time.Millisecond}, 30 * time.Millisecond, []time.Duration{20 * time.Millisecond}},
		{"not yet", []time.Duration{20 * time.Millisecond}, 19 * time.Millisecond, nil},
		{"rounded up to tick", []time.Duration{1500 * time.Microsecond}, 3 * time.Millisecond, []time.Duration{2 * time.Millisecond}},
		{"past fires next tick", []time.Duration{-time.Second}, time.Millisecond, []time.Duration{time.Millisecond}},
		{"ordered", []time.Duration{5 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond}, 10 * time.Millisecond,
			[]time.Duration{3 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond}},
		{"beyond one revolution", []time.Duration{5 * time.Second, 1100 * time.Millisecond}, 6 * time.Second,
			[]time.Duration{1100 * time.Millisecond, 5 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewManual(t0)
			w := New(Options{Clock: m, Shards: 2})
			w.Start()
			defer w.Stop()
			var got []time.Duration
			timers := make([]Timer, len(tc.offsets))
			sh := w.Shard()
			for i, off := range tc.offsets {
				sh.Init(&timers[i], func(now time.Time) { got = append(got, now.Sub(t0)) })
				timers[i].Reset(t0.Add(off))
			}
			m.Advance(tc.advance)
			if len(got) != len(tc.want) {
				t.Fatalf("fired %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("fired %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestManualPeriodicAndStop(t *testing.T) {
	m := NewManual(t0)
	w := New(Options{Clock: m, Shards: 1})
	w.Start()
	defer w.Stop()
	var tm Timer
	var fires []time.Duration
	next := t0.Add(20 * time.Millisecond)
	w.Shard().Init(&tm, func(now time.Time) {
		fires = append(fires, now.Sub(t0))
		next = next.Add(20 * time.Millisecond)
		tm.Reset(next)
	})
	tm.Reset(next)
	m.Advance(time.Second)
	if len(fires) != 50 {
		t.Fatalf("%d fires in 1 s, want 50", len(fires))
	}
	for i, f := range fires {
		if want := time.Duration(i+1) * 20 * time.Millisecond; f != want {
			t.Fatalf("fire %d at %v, want %v", i, f, want)
		}
	}
	if !tm.Stop() {
		t.Fatal("Stop: timer was not pending")
	}
	m.Advance(time.Second)
	if len(fires) != 50 {
		t.Fatalf("fired after Stop")
	}
	tm.StopWait() // not pending, not running: returns at once
}

func TestRealClockFiresAndStops(t *testing.T) {
	before := runtime.NumGoroutine()
	w := New(Options{})
	w.Start()
	fired := make(chan time.Time, 1)
	var tm Timer
	w.Shard().Init(&tm, func(now time.Time) { fired <- now })
	at := time.Now().Add(5 * time.Millisecond)
	tm.Reset(at)
	select {
	case now := <-fired:
		if now.Before(at) {
			t.Fatalf("fired %v early", at.Sub(now))
		}
		if late := now.Sub(at); late > 50*time.Millisecond {
			t.Logf("fired %v late (loaded machine?)", late)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timer did not fire")
	}
	// StopWait from another goroutine while the callback may be running.
	tm.Reset(time.Now())
	tm.StopWait()
	w.Stop()
	// Stop returns once every shard goroutine has called wg.Done; the runtime
	// counts a goroutine until it has returned from its function too, a moment
	// later on a busy machine. A shard goroutine that never ends keeps the count
	// up to the deadline.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines: %d before, %d after Stop", before, after)
	}
}

func BenchmarkResetFire(b *testing.B) {
	m := NewManual(t0)
	w := New(Options{Clock: m, Shards: 1})
	w.Start()
	defer w.Stop()
	const n = 1000
	timers := make([]Timer, n)
	sh := w.Shard()
	for i := range timers {
		tm := &timers[i]
		sh.Init(tm, func(now time.Time) { tm.Reset(now.Add(20 * time.Millisecond)) })
		tm.Reset(t0.Add(time.Duration(i%20) * time.Millisecond))
	}
	b.ReportAllocs()
	b.ResetTimer()
	// Each iteration advances 20 ms: every timer fires once.
	for range b.N {
		m.Advance(20 * time.Millisecond)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fire")
}

func TestStopWaitWaitsForRunningCallback(t *testing.T) {
	w := New(Options{Shards: 1})
	w.Start()
	defer w.Stop()
	running, release, stopped := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var tm Timer
	var after bool
	w.Shard().Init(&tm, func(now time.Time) {
		close(running)
		<-release
		tm.Reset(now.Add(time.Millisecond)) // a callback that reschedules itself
		after = true
	})
	tm.Reset(time.Now())
	<-running
	go func() {
		tm.StopWait()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("StopWait returned while the callback was running")
	default:
	}
	close(release)
	<-stopped
	if !after || tm.Pending() {
		t.Fatalf("after StopWait: callback finished %v, pending %v", after, tm.Pending())
	}
}

func TestShardsRoundRobin(t *testing.T) {
	w := New(Options{Shards: 3, Clock: NewManual(t0)})
	seen := map[*Shard]int{}
	for range 9 {
		seen[w.Shard()]++
	}
	if len(seen) != 3 {
		t.Fatalf("%d shards used, want 3", len(seen))
	}
	for _, n := range seen {
		if n != 3 {
			t.Fatalf("uneven: %v", seen)
		}
	}
}

// Shard.OnTick keeps a shard with no timer pending ticking: its function runs
// at every tick until it is removed, and a timer armed meanwhile still fires.
// Ticking is false on a Manual clock and before Start.
func TestShardOnTickKeepsTicking(t *testing.T) {
	m := New(Options{Clock: NewManual(t0), Shards: 1})
	m.Start()
	if m.Ticking() {
		t.Fatal("a wheel on a Manual clock says it ticks")
	}
	m.Stop()
	w := New(Options{Shards: 1})
	if w.Ticking() {
		t.Fatal("a wheel not started says it ticks")
	}
	w.Start()
	defer w.Stop()
	if !w.Ticking() {
		t.Fatal("a started wheel on the real clock says it does not tick")
	}
	sh := w.Shard()
	if sh.Index() != 0 {
		t.Fatalf("shard index %d, want 0", sh.Index())
	}
	ticks := make(chan struct{}, 16)
	sh.OnTick(func() {
		select {
		case ticks <- struct{}{}:
		default:
		}
	})
	for range 5 { // the shard has no timer: only OnTick keeps it going
		select {
		case <-ticks:
		case <-time.After(10 * time.Second):
			t.Fatal("an idle shard with an OnTick function does not tick")
		}
	}
	fired := make(chan struct{})
	var tm Timer
	sh.Init(&tm, func(time.Time) { close(fired) })
	tm.Reset(w.Now().Add(3 * time.Millisecond))
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the timer did not fire")
	}
	sh.OnTick(nil)
}

// TestFirstTimersAndDeferredWork: on a Manual clock, the InitFirst timers due
// at a tick run before the other timers due then, whatever order they were
// set in; work a callback defers runs once the tick's last timer has run, in
// the order deferred, once per Defer while it waits, and work deferred by
// deferred work waits for the next tick.
func TestFirstTimersAndDeferredWork(t *testing.T) {
	m := NewManual(t0)
	w := New(Options{Clock: m, Shards: 1})
	w.Start()
	defer w.Stop()
	sh := w.Shard()
	var got []string
	var tasks [2]Task
	var again Task
	again.Init(func() { got = append(got, "again") })
	for i := range tasks {
		tasks[i].Init(func() {
			got = append(got, "deferred"+string(rune('0'+i)))
			sh.Defer(&again)
		})
	}
	var later [3]Timer
	for i := range later {
		sh.Init(&later[i], func(time.Time) {
			got = append(got, "later"+string(rune('0'+i)))
			switch i {
			case 0:
				sh.Defer(&tasks[1])
				sh.Defer(&tasks[0])
				sh.Defer(&tasks[1]) // already waiting
			}
		})
		later[i].Reset(t0.Add(5 * time.Millisecond))
	}
	var first Timer
	sh.InitFirst(&first, func(time.Time) { got = append(got, "first") })
	first.Reset(t0.Add(5 * time.Millisecond)) // set last, runs first
	m.Advance(5 * time.Millisecond)
	want := []string{"first", "later0", "later1", "later2", "deferred1", "deferred0"}
	if len(got) != len(want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ran %v, want %v", got, want)
		}
	}
	got = got[:0]
	m.Advance(time.Millisecond)
	if len(got) != 1 || got[0] != "again" {
		t.Fatalf("the next tick ran %v, want the work deferred by deferred work", got)
	}
	// Deferred from outside a tick: at the end of the next one.
	got = got[:0]
	sh.Defer(&tasks[0])
	if len(got) != 0 {
		t.Fatal("deferred work ran before a tick")
	}
	m.Advance(time.Millisecond)
	if len(got) != 1 || got[0] != "deferred0" {
		t.Fatalf("ran %v, want the deferred work at the next tick", got)
	}
}

// TestTickOrder: on running shard goroutines, a tick runs its InitFirst timers,
// then the OnTick function, then the other timers due, then the deferred
// work; and an idle shard wakes to run work deferred from outside.
func TestTickOrder(t *testing.T) {
	w := New(Options{Shards: 1})
	w.Start()
	defer w.Stop()
	sh := w.Shard()
	evs := make(chan string, 64)
	var task Task
	task.Init(func() { evs <- "deferred" })
	var first, later Timer
	sh.InitFirst(&first, func(time.Time) { evs <- "first" })
	sh.Init(&later, func(time.Time) {
		evs <- "later"
		sh.Defer(&task)
	})
	ticking := make(chan struct{}, 1)
	var armed atomic.Bool
	sh.OnTick(func() {
		if armed.Load() {
			select {
			case evs <- "tick":
			default:
			}
		}
		select {
		case ticking <- struct{}{}:
		default:
		}
	})
	<-ticking
	at := w.Now().Add(20 * time.Millisecond)
	later.Reset(at) // set first, runs after the InitFirst timer of its tick
	first.Reset(at)
	armed.Store(true)
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) == 0 || got[len(got)-1] != "deferred" {
		select {
		case e := <-evs:
			if e == "tick" && len(got) > 0 && got[len(got)-1] == "tick" {
				continue // ticks before the timers' one
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("after 10 s: %v", got)
		}
	}
	sh.OnTick(nil)
	// got is "tick" (the ticks before) then the timers' tick.
	want := []string{"first", "tick", "later", "deferred"}
	if got[0] == "tick" {
		got = got[1:]
	}
	if len(got) != len(want) {
		t.Fatalf("tick ran %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("tick ran %v, want %v", got, want)
		}
	}
	// An idle shard (no timer, no OnTick) wakes for deferred work.
	sh.Defer(&task)
	select {
	case e := <-evs:
		if e != "deferred" {
			t.Fatalf("got %q, want the deferred work", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an idle shard did not run deferred work within 10 s")
	}
}
