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
// each tick, after the InitFirst timers due then and before the others; a
// later OnTick replaces f. With a
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
		for l := range s.lv {
			lv := &s.lv[l]
			for j := range lv.slots {
				lv.slots[j].next = &lv.slots[j]
				lv.slots[j].prev = &lv.slots[j]
			}
			lv.far.next, lv.far.prev = &lv.far, &lv.far
		}
		if traceTicks {
			s.trace = newTickTrace()
		}
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
	w    *Wheel
	idx  int
	mu   sync.Mutex
	cond sync.Cond // signalled when a callback returns
	// lv holds the timers by class: lv[first] (InitFirst) run at each tick
	// before the OnTick functions and before lv[later] (Init), the rest.
	lv   [2]level
	wake chan struct{}

	running *Timer
	waiters int

	ontick atomic.Pointer[func()] // Shard.OnTick's f

	// deferred is the work the tick's callbacks left for its end (Defer),
	// in order; under mu.
	deferHead, deferTail *Task

	trace *tickTrace // CXCO_PACE_TRACE=1 only
}

// level is one class of a shard's timers: its own slots and cursor.
type level struct {
	slots [numSlots]Timer
	far   Timer // timers more than one revolution ahead
	cur   int64 // last tick processed
	count int   // pending timers
}

const (
	first = 0 // Shard.InitFirst's timers
	later = 1 // Shard.Init's
)

// Index returns the shard's index in its wheel (0 to Shards-1).
func (s *Shard) Index() int { return s.idx }

// OnTick has the shard's goroutine call f at each tick, after the InitFirst
// timers due then and before the others (and after the wheel's OnTick function), and keeps the shard ticking
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
	lv         *level
	when       int64
	fn         func(now time.Time)
	pending    bool
}

// Init binds t to the shard with callback fn. fn runs on the shard
// goroutine with the time the wheel observed; it must not block. Init must
// be called before any other method and only once.
func (s *Shard) Init(t *Timer, fn func(now time.Time)) {
	t.shard = s
	t.lv = &s.lv[later]
	t.fn = fn
}

// InitFirst is Init for a timer whose work must not wait for the rest of the
// tick's: at each tick the shard runs the InitFirst timers due first (in the
// order they were set), then the OnTick functions, then the other timers due,
// then the work they deferred (Defer). A pacer sending packets on a clock
// goes first, so that it never waits for the reads and the playouts that the
// same tick holds. (Time order holds within each class, not across them: an
// InitFirst timer due at this tick runs before a later one due a tick
// earlier that the shard, running late, has not run yet.)
func (s *Shard) InitFirst(t *Timer, fn func(now time.Time)) {
	s.Init(t, fn)
	t.lv = &s.lv[first]
}

// Task is work a timer callback leaves for the end of its shard's tick
// (Shard.Defer): bind it once with Init, defer it as often as needed without
// allocating.
type Task struct {
	next   *Task
	fn     func()
	queued atomic.Bool
}

// Init binds k to fn. It must be called before k is deferred, and only once.
func (k *Task) Init(fn func()) { k.fn = fn }

// Defer has k's function run on s's goroutine once the tick under way has
// run all of its timers (those due later than the callback that deferred it
// included), in the order deferred; a task already waiting is not queued
// again. From a timer callback of s it runs at the end of that tick;
// otherwise at the end of s's next tick (a Manual clock's next Advance). Work
// that can wait a few hundred microseconds goes here so that the timers of
// the tick never wait for it. Safe for concurrent use.
func (s *Shard) Defer(k *Task) {
	if !k.queued.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	if s.deferTail == nil {
		s.deferHead = k
	} else {
		s.deferTail.next = k
	}
	s.deferTail = k
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}: // an idle shard ticks once to run it
	default:
	}
}

// runDeferred runs the tasks deferred so far (not those they defer).
func (s *Shard) runDeferred() {
	s.mu.Lock()
	k := s.deferHead
	s.deferHead, s.deferTail = nil, nil
	s.mu.Unlock()
	for k != nil {
		next := k.next
		k.next = nil
		k.queued.Store(false)
		k.fn()
		k = next
	}
}

// Reset (re)schedules t to fire at the first tick at or after at. A time
// in the past fires on the next tick.
func (t *Timer) Reset(at time.Time) {
	s := t.shard
	w := s.w
	lv := t.lv
	when := w.tickCeil(at)
	s.mu.Lock()
	if t.pending {
		s.unlink(t)
	}
	if lv.count == 0 {
		// Idle shards do not tick (and an idle class's cursor may lag a
		// tick); catch the cursor up with the clock.
		if c := w.tickFloor(w.clock.Now()); c > lv.cur {
			lv.cur = c
		}
	}
	if when <= lv.cur {
		when = lv.cur + 1
	}
	t.when = when
	s.link(t)
	wake := s.pending() == 1
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
	lv := t.lv
	var head *Timer
	if t.when-lv.cur >= numSlots {
		head = &lv.far
	} else {
		head = &lv.slots[t.when&slotMask]
	}
	t.prev = head.prev
	t.next = head
	head.prev.next = t
	head.prev = t
	t.pending = true
	lv.count++
}

func (s *Shard) unlink(t *Timer) {
	t.prev.next = t.next
	t.next.prev = t.prev
	t.next, t.prev = nil, nil
	t.pending = false
	t.lv.count--
}

// pending is the number of timers pending in both classes; under mu.
func (s *Shard) pending() int { return s.lv[first].count + s.lv[later].count }

// runDue processes every tick up to now's (a Manual clock's Advance): the
// InitFirst timers, then the others, then the deferred work.
func (s *Shard) runDue(now time.Time) {
	target := s.w.tickFloor(now)
	s.runLevel(&s.lv[first], target, now)
	s.runLevel(&s.lv[later], target, now)
	s.runDeferred()
}

// runLevel runs lv's timers due at or before tick target.
func (s *Shard) runLevel(lv *level, target int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for lv.cur < target {
		if lv.count == 0 {
			lv.cur = target
			return
		}
		lv.cur++
		k := lv.cur
		if k&slotMask == 0 {
			s.cascade(lv)
		}
		head := &lv.slots[k&slotMask]
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

// cascade moves lv's far timers that now fall within one revolution into slots.
func (s *Shard) cascade(lv *level) {
	for t := lv.far.next; t != &lv.far; {
		next := t.next
		if t.when-lv.cur < numSlots {
			s.unlink(t)
			s.link(t)
		}
		t = next
	}
}

// run is the shard goroutine: it sleeps while idle (no timer pending, no
// OnTick function, no deferred work), otherwise wakes every tick and runs
// what is due: the InitFirst timers, the OnTick functions, the other timers,
// the deferred work.
func (s *Shard) run(stop <-chan struct{}) {
	w := s.w
	tm := time.NewTimer(time.Hour)
	defer tm.Stop()
	for {
		s.mu.Lock()
		n := s.pending()
		cur := min(s.lv[first].cur, s.lv[later].cur)
		next := w.epoch.Add(time.Duration(cur+1) * w.res)
		idle := n == 0 && s.deferHead == nil
		s.mu.Unlock()
		if idle && s.ontick.Load() == nil {
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
		now := w.clock.Now()
		target := w.tickFloor(now)
		if s.trace != nil {
			s.trace.start(s, now, next)
		}
		s.runLevel(&s.lv[first], target, now)
		if f := w.tick.Load(); f != nil {
			(*f)(s.idx)
		}
		if f := s.ontick.Load(); f != nil {
			(*f)()
		}
		s.runLevel(&s.lv[later], target, w.clock.Now())
		s.runDeferred()
		if s.trace != nil {
			s.trace.end()
		}
	}
}
