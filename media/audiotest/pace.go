package audiotest

import "time"

// Pace calls send(i) for the frames i = 0 .. n-1 of a real-time source, frame
// i when start + i·every has come (start is when Pace is called), and returns
// after the last. It keeps the clock of a sound card, which does not stop while
// the sender is not scheduled: after a stall every frame that fell due goes
// out at once, each with its own index, so RTP timestamps taken from i stay on
// real time.
//
// A time.Ticker drops the ticks its reader misses, so a sender that waits on
// one between frames falls behind real time on a loaded machine while its
// timestamps claim 20 ms a frame, and the receiver's jitter buffer rightly
// throws that audio away as late.
func Pace(n int, every time.Duration, send func(i int)) {
	pace(n, every, time.Now, time.Sleep, send)
}

func pace(n int, every time.Duration, now func() time.Time, sleep func(time.Duration), send func(i int)) {
	start := now()
	for i := range n {
		if d := start.Add(time.Duration(i) * every).Sub(now()); d > 0 {
			sleep(d) // pacing a source, not waiting for a state
		}
		send(i)
	}
}
