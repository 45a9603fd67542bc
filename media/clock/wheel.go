package clock

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Wheel. The zero value is usable.
type Options struct {
	// Clock is the time source; nil means Real. A *Manual drives the wheel
	// from Manual.Advance instead of goroutines.
	Clock Clock
	// Shards is the number of shard goroutines; 0 means runtime.GOMAXPROCS(0).
	Shards int
	// Resolution is the tick; 0 means 1 ms.
	Resolution time.Duration
}

// Wheel is a sharded hashed timing wheel. Create it with New, Start it, and
// Stop it when done; Stop waits for its goroutines.
type Wheel struct {
	clock  Clock
	res    time.Duration
	epoch  time.Time
	shards []*Shard
	rr     atomic.Uint32

	mu      sync.Mutex
	started bool
	stop    chan struct{}
	wg      sync.WaitGroup

	tick atomic.Pointer[func(shard int)]
}

// OnTick has every shard goroutine call f with its index (0 to Shards-1) at
// each tick, before the timers due then run; a later OnTick replaces f. With a
// Manual clock there are no shard goroutines and f is never called. f must be
// short: the shard's timers wait for it.
func (w *Wheel) OnTick(f func(shard int)) { w.tick.Store(&f) }

const (
	slotBits = 10
	numSlots = 1 << slotBits // ticks covered by one revolution
	slotMask = numSlots - 1
)

// New returns a wheel that is not yet running.
func New(opts Options) *Wheel {
	if opts.Clock == nil {
		opts.Clock = Real{}
	}
	if opts.Shards <= 0 {
		opts.Shards = runtime.GOMAXPROCS(0)
	}
	if opts.Resolution <= 0 {
		opts.Resolution = time.Millisecond
	}
	w := &Wheel{clock: opts.Clock, res: opts.Resolution}
	w.epoch = w.clock.Now()
	w.shards = make([]*Shard, opts.Shards)
	for i := range w.shards {
		s := &Shard{w: w, idx: i, wake: make(chan struct{}, 1)}
		s.cond.L = &s.mu
		for j := range s.slots {
			s.slots[j].next = &s.slots[j]
			s.slots[j].prev = &s.slots[j]
		}
		s.far.next, s.far.prev = &s.far, &s.far
		w.shards[i] = s
	}
	return w
}

// Clock returns the wheel's time source.
func (w *Wheel) Clock() Clock { return w.clock }

// Now is w.Clock().Now().
func (w *Wheel) Now() time.Time { return w.clock.Now() }

// Resolution returns the tick length.
func (w *Wheel) Resolution() time.Duration { return w.res }

// Shards returns how many shards the wheel has.
func (w *Wheel) Shards() int { return len(w.shards) }

// Shard returns shards in turn; put all timers of one call on one shard.
func (w *Wheel) Shard() *Shard {
	return w.shards[int(w.rr.Add(1)-1)%len(w.shards)]
}

// Start runs the shard goroutines (or attaches to a Manual clock).
func (w *Wheel) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return
	}
	w.started = true
	if d, ok := w.clock.(driver); ok {
		d.attach(w)
		return
	}
	w.stop = make(chan struct{})
	for _, s := range w.shards {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			s.run(w.stop)
		}()
	}
}

// Stop stops the shard goroutines and waits for them. Pending timers stay
// pending and do not fire.
func (w *Wheel) Stop() {
	w.mu.Lock()
	if !w.started {
		w.mu.Unlock()
		return
	}
	w.started = false
	if d, ok := w.clock.(driver); ok {
		w.mu.Unlock()
		d.detach(w)
		return
	}
	close(w.stop)
	w.mu.Unlock()
	w.wg.Wait()
}

// runDue runs, on every shard, the timers due at or before now.
func (w *Wheel) runDue(now time.Time) {
	for _, s := range w.shards {
		s.runDue(now)
	}
}

// tickCeil is the first tick at or after t.
func (w *Wheel) tickCeil(t time.Time) int64 {
	d := t.Sub(w.epoch)
	if d <= 0 {
		return 0
	}
	return int64((d + w.res - 1) / w.res)
}

// tickFloor is the last tick at or before t.
func (w *Wheel) tickFloor(t time.Time) int64 {
	d := t.Sub(w.epoch)
	if d <= 0 {
		return 0
	}
	return int64(d / w.res)
}

// Shard is one goroutine's part of the wheel.
type Shard struct {
	w     *Wheel
	idx   int
	mu    sync.Mutex
	cond  sync.Cond // signalled when a callback returns
	slots [numSlots]Timer
	far   Timer // timers more than one revolution ahead
	cur   int64 // last tick processed
	count int   // pending timers
	wake  chan struct{}

	running *Timer
	waiters int

	ontick atomic.Pointer[func()] // Shard.OnTick's f
}

// Index returns the shard's index in its wheel (0 to Shards-1).
func (s *Shard) Index() int { return s.idx }

// OnTick has the shard's goroutine call f at each tick, before the timers due
// then run (and after the wheel's OnTick function), and keeps the shard ticking
// while f is set, even with no timer pending; nil removes it. f must be short:
// the shard's timers wait for it. Ticking reports whether f will be called: a
// wheel on a Manual clock, or one not started, runs no shard goroutine.
func (s *Shard) OnTick(f func()) {
	if f == nil {
		s.ontick.Store(nil)
		return
	}
	s.ontick.Store(&f)
	select {
	case s.wake <- struct{}{}: // an idle shard starts ticking
	default:
	}
}

// Ticking reports whether the wheel runs its own shard goroutines (it was
// started and its clock is not a Manual one), which call OnTick functions.
func (w *Wheel) Ticking() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, driven := w.clock.(driver)
	return w.started && !driven
}

// Timer is an intrusive timer: embed it in your struct, bind it once with
// Shard.Init, then Reset and Stop it as often as needed without allocating.
// Its methods are safe for concurrent use, including from callbacks.
type Timer struct {
	next, prev *Timer
	shard      *Shard
	when       int64
	fn         func(now time.Time)
	pending    bool
}

// Init binds t to the shard with callback fn. fn runs on the shard
// goroutine with the time the wheel observed; it must not block. Init must
// be called before any other method and only once.
func (s *Shard) Init(t *Timer, fn func(now time.Time)) {
	t.shard = s
	t.fn = fn
}

// Reset (re)schedules t to fire at the first tick at or after at. A time
// in the past fires on the next tick.
func (t *Timer) Reset(at time.Time) {
	s := t.shard
	w := s.w
	when := w.tickCeil(at)
	s.mu.Lock()
	if t.pending {
		s.unlink(t)
	}
	if s.count == 0 {
		// Idle shards do not tick; catch the cursor up with the clock.
		if c := w.tickFloor(w.clock.Now()); c > s.cur {
			s.cur = c
		}
	}
	if when <= s.cur {
		when = s.cur + 1
	}
	t.when = when
	s.link(t)
	wake := s.count == 1
	s.mu.Unlock()
	if wake {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Stop cancels t and reports whether it was pending. A callback already
// running continues.
func (t *Timer) Stop() bool {
	s := t.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	was := t.pending
	if was {
		s.unlink(t)
	}
	return was
}

// StopWait cancels t and, if its callback is running, waits for it to
// return (cancelling again if the callback rescheduled it). It must not be
// called from a callback on the same shard.
func (t *Timer) StopWait() {
	s := t.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if t.pending {
			s.unlink(t)
		}
		if s.running != t {
			return
		}
		s.waiters++
		s.cond.Wait()
		s.waiters--
	}
}

// Pending reports whether t is scheduled.
func (t *Timer) Pending() bool {
	s := t.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	return t.pending
}

func (s *Shard) link(t *Timer) {
	var head *Timer
	if t.when-s.cur >= numSlots {
		head = &s.far
	} else {
		head = &s.slots[t.when&slotMask]
	}
	t.prev = head.prev
	t.next = head
	head.prev.next = t
	head.prev = t
	t.pending = true
	s.count++
}

func (s *Shard) unlink(t *Timer) {
	t.prev.next = t.next
	t.next.prev = t.prev
	t.next, t.prev = nil, nil
	t.pending = false
	s.count--
}

// runDue processes every tick up to now's.
func (s *Shard) runDue(now time.Time) {
	target := s.w.tickFloor(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.cur < target {
		if s.count == 0 {
			s.cur = target
			return
		}
		s.cur++
		k := s.cur
		if k&slotMask == 0 {
			s.cascade()
		}
		head := &s.slots[k&slotMask]
		for head.next != head {
			t := head.next
			s.unlink(t)
			s.running = t
			s.mu.Unlock()
			t.fn(now)
			s.mu.Lock()
			s.running = nil
			if s.waiters > 0 {
				s.cond.Broadcast()
			}
		}
	}
}

// cascade moves far timers that now fall within one revolution into slots.
func (s *Shard) cascade() {
	for t := s.far.next; t != &s.far; {
		next := t.next
		if t.when-s.cur < numSlots {
			s.unlink(t)
			s.link(t)
		}
		t = next
	}
}

// run is the shard goroutine: it sleeps while idle (no timer pending and no
// OnTick function), otherwise wakes every tick and runs what is due.
func (s *Shard) run(stop <-chan struct{}) {
	w := s.w
	tm := time.NewTimer(time.Hour)
	defer tm.Stop()
	for {
		s.mu.Lock()
		n := s.count
		next := w.epoch.Add(time.Duration(s.cur+1) * w.res)
		s.mu.Unlock()
		if n == 0 && s.ontick.Load() == nil {
			select {
			case <-s.wake:
				continue
			case <-stop:
				return
			}
		}
		if d := next.Sub(w.clock.Now()); d > 0 {
			tm.Reset(d)
			select {
			case <-tm.C:
			case <-stop:
				return
			}
		}
		if f := w.tick.Load(); f != nil {
			(*f)(s.idx)
		}
		if f := s.ontick.Load(); f != nil {
			(*f)()
		}
		s.runDue(w.clock.Now())
	}
}
