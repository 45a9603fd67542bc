package clock

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// The pacing trace (CXCO_PACE_TRACE=1, a debugging switch read once): every
// shard records how late each tick started against its due time and how long
// its work took, media's pacer how late each packet left against its
// schedule and how far into its tick; every 10 s the process writes each
// histogram's percentiles for those 10 s to stderr, one line. It tells a
// shard whose OS thread ran late (the tick starts late) from a pacer that
// waited for the rest of its tick (the send is late within it). Off, it
// costs a nil check per tick.
var traceTicks = os.Getenv("CXCO_PACE_TRACE") == "1"

// Tracing reports whether the pacing trace is on.
func Tracing() bool { return traceTicks }

// Hist is a histogram of durations for the pacing trace: 10 µs bins up to
// 2 ms, 0.5 ms bins up to 100 ms, then one bin.
type Hist struct{ bins [histBins]atomic.Uint64 }

const histBins = 200 + 196 + 1

func histBin(d time.Duration) int {
	us := d.Microseconds()
	switch {
	case us < 0:
		return 0
	case us < 2000:
		return int(us / 10)
	case us < 100000:
		return 200 + int((us-2000)/500)
	}
	return histBins - 1
}

// binTop is bin i's upper edge.
func binTop(i int) time.Duration {
	if i < 200 {
		return time.Duration(i+1) * 10 * time.Microsecond
	}
	if i < histBins-1 {
		return 2*time.Millisecond + time.Duration(i-199)*500*time.Microsecond
	}
	return time.Hour
}

// Add counts d.
func (h *Hist) Add(d time.Duration) { h.bins[histBin(d)].Add(1) }

func (h *Hist) count() (n uint64) {
	for i := range h.bins {
		n += h.bins[i].Load()
	}
	return n
}

// take empties h into a plain copy.
func (h *Hist) take() (c [histBins]uint64, n uint64) {
	for i := range h.bins {
		c[i] = h.bins[i].Swap(0)
		n += c[i]
	}
	return c, n
}

func (h *Hist) summary() string {
	c, n := h.take()
	if n == 0 {
		return "n=0"
	}
	q := func(p float64) string {
		want := uint64(p * float64(n))
		var acc uint64
		for i, v := range c {
			acc += v
			if acc > want || i == len(c)-1 {
				if i == histBins-1 {
					return ">100ms"
				}
				return fmt.Sprintf("%.2f", float64(binTop(i))/1e6)
			}
		}
		return "?"
	}
	var over1, over5 uint64
	for i, v := range c {
		if binTop(i) > time.Millisecond {
			over1 += v
		}
		if binTop(i) > 5*time.Millisecond {
			over5 += v
		}
	}
	return fmt.Sprintf("n=%d p50=%s p99=%s p99.9=%s max=%s ms, >1ms %d >5ms %d", n, q(0.5), q(0.99), q(0.999), q(1), over1, over5)
}

// The trace's histograms, over every shard.
var (
	tickLate Hist // a tick's start against its due time
	tickWork Hist // a tick's work, from its start to the end of its deferred work
	// PaceLate is each packet a pacer sent, against its schedule; by the
	// pacer's class ([0]: InitFirst timers, [1]: the others).
	PaceLate [2]Hist
	// PaceInTick is each packet a pacer sent, against its tick's start.
	PaceInTick [2]Hist
	// PaceGap is the time between a stream's packets, as its caller sees
	// them leave (the loadtest's callers' inter-packet gaps, in-process).
	PaceGap [2]Hist
)

type tickTrace struct{ at time.Time }

func newTickTrace() *tickTrace { return new(tickTrace) }

func (t *tickTrace) start(s *Shard, now, due time.Time) {
	t.at = now
	tickLate.Add(now.Sub(due))
}

func (t *tickTrace) end() { tickWork.Add(time.Since(t.at)) }

// TickStart is when the tick under way on s started; zero with the trace
// off or on a Manual clock. Only for s's own callbacks.
func (s *Shard) TickStart() time.Time {
	if s.trace == nil {
		return time.Time{}
	}
	return s.trace.at
}

func init() {
	if !traceTicks {
		return
	}
	go func() {
		for range time.Tick(10 * time.Second) {
			at := time.Now().UTC().Format("15:04:05")
			fmt.Fprintf(os.Stderr, "pace-trace %s tick-late {%s} tick-work {%s}\n", at, tickLate.summary(), tickWork.summary())
			for c, name := range []string{"first", "later"} {
				if PaceLate[c].count() == 0 {
					continue
				}
				fmt.Fprintf(os.Stderr, "pace-trace %s %s: pace-late {%s} pace-in-tick {%s} pace-gap {%s}\n", at, name,
					PaceLate[c].summary(), PaceInTick[c].summary(), PaceGap[c].summary())
			}
		}
	}()
}
