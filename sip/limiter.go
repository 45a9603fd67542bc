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
//   - Calls: INVITEs, from all sources together, at most calls a second (burst
//     twice that): each holds a transaction for up to 32 s and a store lookup, so
//     this bounds the memory an INVITE flood can take. Over it the server answers
//     503 with Retry-After, which a real trunk understands.
//   - Memory: at most maxSources buckets; sources beyond share one bucket.
//
// Buckets of sources idle for a minute are forgotten.
type floodLimiter struct {
	rate, burst float64 // per source; rate 0: no per-source or global limit
	global      float64 // all sources; 0: none
	now         func() time.Time
	maxSources  int

	mu       sync.Mutex
	buckets  map[netip.Addr]*bucket
	overflow bucket // shared by the sources beyond maxSources
	calls    bucket
	callRate float64
	win      int64 // the current one-second window (unix seconds)
	winCount int   // sources seen in it
	prev     int   // sources seen in the previous one
	swept    time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
	win    int64 // the window the source was last counted in
	fresh  bool  // never filled yet
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
	l.calls = bucket{tokens: 2 * l.callRate, last: o.now()}
	return l
}

// allow takes a token for one request from src; invite says it is an INVITE.
func (l *floodLimiter) allow(src netip.Addr, invite bool) verdict {
	if l == nil {
		return admit
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.rate > 0 {
		if v := l.allowSource(now, src); v != admit {
			return v
		}
	}
	if invite && l.callRate > 0 {
		c := &l.calls
		c.tokens = min(2*l.callRate, c.tokens+now.Sub(c.last).Seconds()*l.callRate)
		c.last = now
		if c.tokens < 1 {
			return overCalls
		}
		c.tokens--
	}
	return admit
}

func (l *floodLimiter) allowSource(now time.Time, src netip.Addr) verdict {
	if now.Sub(l.swept) > time.Minute {
		for a, b := range l.buckets {
			if now.Sub(b.last) > time.Minute {
				delete(l.buckets, a)
			}
		}
		l.swept = now
	}
	if w := now.Unix(); w != l.win {
		if w == l.win+1 {
			l.prev = l.winCount
		} else {
			l.prev = 0
		}
		l.win, l.winCount = w, 0
	}
	b := l.buckets[src]
	if b == nil {
		if len(l.buckets) < l.maxSources {
			b = &bucket{fresh: true}
			l.buckets[src] = b
		} else {
			b = &l.overflow
		}
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
