package sip

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// floodLimiter decides, before a request is parsed, whether the server takes it
// on. Every request counts, whatever its method and transport (responses do not:
// they only complete our own transactions).
//
//   - Per source: a token bucket of rate requests a second (burst burst).
//   - Global: all sources together get global requests a second, shared fairly:
//     while n sources are active, each may use at most global/n, so a flood from
//     a hundred addresses slows those hundred and not a quiet trunk sending an
//     OPTIONS a second (max-min fairness, as a fair queue would give).
//   - Calls: INVITEs, from all sources together, at most calls a second: each
//     holds a transaction for up to 32 s and a store lookup, so this bounds the
//     memory an INVITE flood can take. The rate is shared fairly too: while n
//     sources send INVITEs, each may start at most calls/n a second (burst twice
//     that), so a flood of INVITEs from a hundred addresses does not take a quiet
//     trunk's calls with it (one bucket for all let the flooders empty it, and 16
//     of 40 new calls from a trunk got 503). A source that starts sending INVITEs
//     takes its first second's worth from a shared pool (twice calls, refilled at
//     calls a second), so many new sources at once get no more than the pool.
//     Over its share a source's INVITE is answered 503 with Retry-After, which a
//     real trunk understands.
//   - Memory: at most maxSources buckets; sources beyond share one bucket.
//
// Buckets of sources idle for a minute are forgotten.
type floodLimiter struct {
	rate, burst float64 // per source; rate 0: no per-source or global limit
	global      float64 // all sources; 0: none
	now         func() time.Time
	maxSources  int

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	overflow  bucket // shared by the sources beyond maxSources
	callPool  bucket // the first INVITE burst of sources new to INVITEs comes from here
	callRate  float64
	win       int64 // the current one-second window (unix seconds)
	winCount  int   // sources seen in it
	prev      int   // sources seen in the previous one
	callWin   int64 // the same for the sources sending INVITEs
	callCount int
	callPrev  int
	swept     time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
	win    int64 // the window the source was last counted in
	fresh  bool  // never filled yet
	// The source's INVITEs: its share of the call rate (callsLast zero: none yet).
	calls     float64
	callsLast time.Time
	callsWin  int64
}

// verdict is what the limiter decided about one request.
type verdict int

const (
	admit      verdict = iota
	overSource         // the source is over its own budget
	overGlobal         // the source is over its fair share of the global budget
	overCalls          // an INVITE over the global call rate: 503
)

// dropCause names a verdict in metrics (cxco_sip_dropped_total{cause}).
func (v verdict) dropCause() string {
	switch v {
	case overSource:
		return "flood"
	case overGlobal:
		return "flood_global"
	case overCalls:
		return "call_rate"
	}
	return ""
}

type limiterOptions struct {
	rate       float64 // per source, requests/s (<= 0: no limit)
	burst      int
	global     float64 // all sources, requests/s (<= 0: none)
	calls      float64 // INVITEs/s, all sources (<= 0: none)
	maxSources int     // default 65536
	now        func() time.Time
}

func newFloodLimiter(o limiterOptions) *floodLimiter {
	if o.now == nil {
		o.now = time.Now
	}
	if o.maxSources <= 0 {
		o.maxSources = 65536
	}
	l := &floodLimiter{rate: max(o.rate, 0), burst: float64(max(o.burst, 1)), global: max(o.global, 0), now: o.now,
		maxSources: o.maxSources, buckets: map[netip.Addr]*bucket{}, callRate: max(o.calls, 0)}
	l.overflow.fresh = true
	l.callPool = bucket{tokens: 2 * l.callRate, last: o.now()}
	return l
}

// allow takes a token for one request from src; invite says it is an INVITE.
func (l *floodLimiter) allow(src netip.Addr, invite bool) verdict {
	if l == nil {
		return admit
	}
	calls := invite && l.callRate > 0
	if l.rate <= 0 && !calls {
		return admit
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	b := l.bucketOf(src)
	if l.rate > 0 {
		if v := l.allowSource(now, b); v != admit {
			return v
		}
	}
	if calls && !l.allowCall(now, b) {
		return overCalls
	}
	return admit
}

// sweep forgets the buckets of sources idle for a minute, once a minute.
func (l *floodLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) <= time.Minute {
		return
	}
	for a, b := range l.buckets {
		if now.Sub(b.last) > time.Minute && now.Sub(b.callsLast) > time.Minute {
			delete(l.buckets, a)
		}
	}
	l.swept = now
}

// bucketOf is src's bucket, or the shared one when the table is full.
func (l *floodLimiter) bucketOf(src netip.Addr) *bucket {
	b := l.buckets[src]
	if b == nil {
		if len(l.buckets) >= l.maxSources {
			return &l.overflow
		}
		b = &bucket{fresh: true}
		l.buckets[src] = b
	}
	return b
}

func (l *floodLimiter) allowSource(now time.Time, b *bucket) verdict {
	if w := now.Unix(); w != l.win {
		if w == l.win+1 {
			l.prev = l.winCount
		} else {
			l.prev = 0
		}
		l.win, l.winCount = w, 0
	}
	if b.win != l.win || b.fresh {
		b.win = l.win
		l.winCount++
	}
	rate, burst, shared := l.rate, l.burst, false
	if l.global > 0 {
		if share := l.global / float64(max(l.prev, l.winCount, 1)); share < rate {
			rate, burst, shared = share, max(1, min(burst, 2*share)), true
		}
	}
	if b.fresh {
		b.tokens, b.last, b.fresh = burst, now, false
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		if shared {
			return overGlobal
		}
		return overSource
	}
	b.tokens--
	return admit
}

// allowCall takes one of the source's share of the call rate for an INVITE.
func (l *floodLimiter) allowCall(now time.Time, b *bucket) bool {
	if w := now.Unix(); w != l.callWin {
		if w == l.callWin+1 {
			l.callPrev = l.callCount
		} else {
			l.callPrev = 0
		}
		l.callWin, l.callCount = w, 0
	}
	if b.callsWin != l.callWin || b.callsLast.IsZero() {
		b.callsWin = l.callWin
		l.callCount++
	}
	share := l.callRate / float64(max(l.callPrev, l.callCount, 1))
	burst := max(1, min(2*l.callRate, 2*share))
	p := &l.callPool
	p.tokens = min(2*l.callRate, p.tokens+now.Sub(p.last).Seconds()*l.callRate)
	p.last = now
	if b.callsLast.IsZero() {
		// A second of its share, not its whole burst: the first source after a
		// quiet spell would otherwise take the pool and leave the next none.
		b.calls = max(0, min(share, p.tokens))
		p.tokens -= b.calls
	} else {
		b.calls = min(burst, b.calls+now.Sub(b.callsLast).Seconds()*share)
	}
	b.callsLast = now
	if b.calls < 1 {
		return false
	}
	b.calls--
	return true
}

// sources is how many sources have a bucket (tests, metrics).
func (l *floodLimiter) sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// dropWarner logs a warning for a source the trunk allow-list drops, at most once a
// minute per source address, so an operator who forgot --trunk-allow sees why the
// carrier's calls vanish (the metric alone says only that something was dropped).
// It remembers at most maxDropSources sources; beyond that (a scan from many
// addresses) it stays quiet until the minute is over.
type dropWarner struct {
	mu     sync.Mutex
	last   map[netip.Addr]time.Time
	swept  time.Time
	now    func() time.Time
	warned int // warnings logged (tests)
}

const maxDropSources = 4096

func (d *dropWarner) warn(log interface {
	Warn(msg string, args ...any)
}, src netip.Addr, transport string, data []byte) {
	if !isNewRequest(data) {
		return // responses, ACKs and keep-alives: the request that started them was logged
	}
	method, _, _ := strings.Cut(string(data[:min(len(data), 16)]), " ")
	d.warnSource(log, src, transport, method)
}

// warnSource is warn for what has no request to show (a TCP connection refused
// at accept: method "connect").
func (d *dropWarner) warnSource(log interface {
	Warn(msg string, args ...any)
}, src netip.Addr, transport, method string) {
	now := time.Now()
	if d.now != nil {
		now = d.now()
	}
	d.mu.Lock()
	if d.last == nil {
		d.last = map[netip.Addr]time.Time{}
	}
	if now.Sub(d.swept) > time.Minute {
		for a, t := range d.last {
			if now.Sub(t) >= time.Minute {
				delete(d.last, a)
			}
		}
		d.swept = now
	}
	t, seen := d.last[src]
	if (seen && now.Sub(t) < time.Minute) || (!seen && len(d.last) >= maxDropSources) {
		d.mu.Unlock()
		return
	}
	d.last[src] = now
	d.warned++
	d.mu.Unlock()
	log.Warn("SIP request dropped: the source is in no trunk's allow list (--trunk-allow, or a trunk's allow); logged once a minute per source",
		"source", src.String(), "transport", strings.ToLower(transport), "method", method)
}
