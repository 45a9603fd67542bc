package sip

import (
	"net/netip"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func addrN(i int) netip.Addr                 { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
func admitted(l *floodLimiter, a netip.Addr, n int, invite bool) (ok int) {
	for range n {
		if l.allow(a, invite) == admit {
			ok++
		}
	}
	return ok
}

func TestFloodLimiter(t *testing.T) {
	t.Run("per source burst then rate", func(t *testing.T) {
		c := &fakeClock{t: time.Unix(1000, 0)}
		l := newFloodLimiter(limiterOptions{rate: 10, burst: 20, now: c.now})
		if got := admitted(l, addrN(1), 100, false); got != 20 {
			t.Fatalf("burst: %d admitted, want 20", got)
		}
		if v := l.allow(addrN(1), false); v != overSource || v.dropCause() != "flood" {
			t.Fatalf("over the burst: %v", v)
		}
		if got := admitted(l, addrN(2), 5, false); got != 5 {
			t.Fatalf("another source: %d of 5", got)
		}
		c.advance(time.Second)
		if got := admitted(l, addrN(1), 100, false); got != 10 {
			t.Fatalf("after 1 s: %d admitted, want 10", got)
		}
	})
	t.Run("global budget shared fairly", func(t *testing.T) {
		c := &fakeClock{t: time.Unix(2000, 0)}
		l := newFloodLimiter(limiterOptions{rate: 300, burst: 600, global: 1000, now: c.now})
		quiet := netip.MustParseAddr("192.0.2.1")
		total, quietOK := 0, 0
		for sec := range 10 {
			for range 10 { // 100 ms slices
				for i := range 100 { // 100 flooders, 10 requests each per slice: 10,000/s each
					total += admitted(l, addrN(i), 10, false)
				}
				if sec > 0 && l.allow(quiet, false) == admit { // 10/s, legitimately
					quietOK++
				}
				c.advance(100 * time.Millisecond)
			}
		}
		// The flooders share 1000/s (their first second starts from full buckets).
		if total > 1000*10+100*600 || total < 1000*8 {
			t.Fatalf("flooders got %d in 10 s, want about 10,000", total)
		}
		if quietOK != 90 {
			t.Fatalf("the quiet source got %d of 90 through", quietOK)
		}
		admitted(l, addrN(1), 5, false)
		if v := l.allow(addrN(1), false); v != overGlobal || v.dropCause() != "flood_global" {
			t.Fatalf("a flooder over its share: %v", v)
		}
	})
	t.Run("call rate", func(t *testing.T) {
		c := &fakeClock{t: time.Unix(3000, 0)}
		l := newFloodLimiter(limiterOptions{rate: 1000, burst: 2000, calls: 50, now: c.now})
		got := 0
		for i := range 10 {
			got += admitted(l, addrN(i), 100, true)
		}
		if got > 100 || got < 95 {
			t.Fatalf("INVITE burst of 10 new sources: %d, want about 100 (the pool: 2 s of 50/s)", got)
		}
		if v := l.allow(addrN(99), true); v != overCalls || v.dropCause() != "call_rate" {
			t.Fatalf("INVITE over the call rate: %v", v)
		}
		if l.allow(addrN(99), false) != admit {
			t.Fatal("an OPTIONS is not bound by the call rate")
		}
		// A source that starts calling right after another is not left with nothing.
		fresh := newFloodLimiter(limiterOptions{rate: 1000, burst: 2000, calls: 50, now: c.now})
		if admitted(fresh, addrN(1), 1, true) != 1 || admitted(fresh, addrN(2), 10, true) != 10 {
			t.Fatal("the second source's first 10 INVITEs refused after the first source's one")
		}
		// One source alone has the whole rate.
		c.advance(10 * time.Second)
		if got := admitted(l, addrN(5), 100, true); got != 100 {
			t.Fatalf("one source after 10 s: %d INVITEs, want its burst of 100", got)
		}
		c.advance(time.Second)
		if got := admitted(l, addrN(5), 100, true); got != 50 {
			t.Fatalf("one source 1 s later: %d INVITEs, want 50", got)
		}
	})
	t.Run("call rate shared fairly", func(t *testing.T) {
		// 100 sources flood INVITEs (each within the request budget); a trunk
		// places 2 calls a second through it. Before, the flooders emptied the one
		// INVITE bucket and the trunk's calls got 503.
		c := &fakeClock{t: time.Unix(5000, 0)}
		l := newFloodLimiter(limiterOptions{rate: 100000, burst: 200000, calls: 200, now: c.now})
		trunk := netip.MustParseAddr("192.0.2.1")
		total, trunkOK, trunkTried := 0, 0, 0
		for sec := range 10 {
			for slice := range 10 { // 100 ms slices
				for i := range 100 { // 100 flooders, 5 INVITEs each per slice: 5,000/s in all
					total += admitted(l, addrN(i), 5, true)
				}
				if sec > 0 && slice%5 == 0 { // the trunk: 2 calls a second
					trunkTried++
					if l.allow(trunk, true) == admit {
						trunkOK++
					}
				}
				c.advance(100 * time.Millisecond)
			}
		}
		if trunkOK != trunkTried {
			t.Fatalf("the trunk got %d of %d calls through the flood", trunkOK, trunkTried)
		}
		// The flooders share the 200/s, plus the pool's first 400.
		if total > 200*10+400 || total < 200*8 {
			t.Fatalf("flooders got %d INVITEs in 10 s, want about 2,000", total)
		}
	})
	t.Run("bounded memory", func(t *testing.T) {
		c := &fakeClock{t: time.Unix(4000, 0)}
		l := newFloodLimiter(limiterOptions{rate: 10, burst: 10, maxSources: 100, now: c.now})
		for i := range 1000 {
			l.allow(addrN(i), false)
		}
		if n := l.sources(); n != 100 {
			t.Fatalf("%d buckets, want 100", n)
		}
		// Sources beyond the table share one bucket.
		if got := admitted(l, addrN(5000), 20, false); got != 0 {
			t.Fatalf("overflow source got %d (the shared bucket is spent)", got)
		}
		c.advance(2 * time.Minute)
		l.allow(addrN(1), false)
		if n := l.sources(); n != 1 {
			t.Fatalf("%d buckets after the sweep, want 1", n)
		}
	})
	t.Run("no limit", func(t *testing.T) {
		l := newFloodLimiter(limiterOptions{})
		if got := admitted(l, addrN(1), 10000, true); got != 10000 {
			t.Fatalf("%d of 10000", got)
		}
	})
}
