package sip

import (
	"net/netip"
	"strings"
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
	method, _, _ := strings.Cut(string(data[:min(len(data), 16)]), " ")
	log.Warn("SIP request dropped: the source is in no trunk's allow list (--trunk-allow, or a trunk's allow); logged once a minute per source",
		"source", src.String(), "transport", strings.ToLower(transport), "method", method)
}
