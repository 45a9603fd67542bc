package sip

import (
	"net/netip"
	"sync"
	"time"
)

// floodLimiter is a token bucket per source address for new requests, so one source
// flooding INVITEs cannot starve the others. Buckets of idle sources are forgotten.
type floodLimiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newFloodLimiter(rate float64, burst int, now func() time.Time) *floodLimiter {
	if now == nil {
		now = time.Now
	}
	return &floodLimiter{rate: rate, burst: float64(burst), now: now, buckets: map[netip.Addr]*bucket{}}
}

// allow takes a token for src; false means over the limit.
func (l *floodLimiter) allow(src netip.Addr) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for a, b := range l.buckets {
			if now.Sub(b.last) > time.Minute {
				delete(l.buckets, a)
			}
		}
		l.swept = now
	}
	b := l.buckets[src]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[src] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
