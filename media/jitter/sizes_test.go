package jitter

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The ring is sized to what the depth and a packet need (2240 samples at
// 8 kHz, not the power of two above, 4096), and minQ to the entries it holds
// (16 at first, not the window's 256). Neither size may show: a buffer with
// today's sizes plays, counts and measures exactly like one given the old
// sizes from the start (the ring a power of two, minQ as long as histQ), call
// for call, on long random schedules that reach every path the sizes touch:
// jitter, delay spikes and a delayed start (packets that arrive together,
// the later ones far ahead of playout), playout that stalls (the owner's
// timer fires late, so packets arrive up to the old ring's reach ahead and
// the ring grows), loss, duplicates, reordering, packets of 10 to 60 ms,
// timestamp jumps (past the reach: a new timeline) and SSRC changes, and a
// transit that rises for seconds (minQ grows).
func TestSizesAreInvisible(t *testing.T) {
	grew, jumps, minLen := 0, 0, 0
	src := source(8000 * 7)
	for seed := range uint64(48) {
		rate := 8000
		if seed%3 == 2 {
			rate = 16000
		}
		t.Run(fmt.Sprintf("seed %d, %d Hz", seed, rate), func(t *testing.T) {
			var g, j bool
			var m int
			if rate == 8000 {
				g, j, m = sizesCase(t, seed, New(Options[byte]{Codec: ulaw{}}), New(Options[byte]{Codec: ulaw{}}), func(i int) byte { return src[i%len(src)] })
			} else {
				g, j, m = sizesCase(t, seed, New(Options[int16]{Codec: PCM{}, SampleRate: rate}), New(Options[int16]{Codec: PCM{}, SampleRate: rate}),
					func(i int) int16 { return int16((i*7919)%20011 - 10005) })
			}
			if g {
				grew++
			}
			if j {
				jumps++
			}
			minLen = max(minLen, m)
		})
	}
	t.Logf("%d of 48 schedules grew the ring, %d jumped past its reach; minQ grew to %d", grew, jumps, minLen)
	if grew < 5 || grew > 44 || jumps < 5 || minLen < 64 {
		t.Fatal("the schedules do not reach every path of the sizes")
	}
}

// oldSizes gives b the sizes of the buffer before they were trimmed: a ring
// of the power of two at or above its need, minQ as long as histQ.
func oldSizes[T Sample](b *Buffer[T]) {
	n := b.reach
	b.ring, b.have, b.arrival, b.size = make([]T, n), make([]uint64, n/64), make([]int32, n>>b.blockShift), n
	b.minQ, b.minMask = make([]sample, b.qlen), b.qlen-1
}

// sizesCase drives a (today's sizes) and ref (the old ones) with one random
// schedule, in lockstep, and compares every result; it reports whether a's
// ring grew and whether a packet jumped past the reach.
func sizesCase[T Sample](t *testing.T, seed uint64, a, ref *Buffer[T], sample func(i int) T) (grew, jumped bool, minGrew int) {
	oldSizes(ref)
	if a.size >= a.reach || len(a.minQ) >= a.qlen {
		t.Fatalf("ring of %d (reach %d), minQ of %d (histQ %d): nothing to compare", a.size, a.reach, len(a.minQ), a.qlen)
	}
	size0 := a.size
	rng := rand.New(rand.NewPCG(seed, 99))
	rate := int(a.rate)
	ms := rate / 1000 // samples per ms

	// The schedule: 40 s of packets.
	type pkt struct {
		at time.Duration
		p  Packet[T]
	}
	var s []pkt
	var (
		ssrc     = uint32(rng.IntN(1 << 30))
		seq      = uint16(rng.Uint32())
		ts       = rng.Uint32()
		send     time.Duration // media time of the next packet
		spike    time.Duration // extra delay, decaying
		rise     int           // packets left of a transit that rises steadily (no jitter)
		riseD    time.Duration // what it rose by, falling back after
		jitter   = time.Duration(rng.IntN(60_000)) * time.Microsecond
		lossP    = rng.Float64() * 0.1
		ptimes   = []int{10, 20, 20, 20, 30, 60}
		ptime    = ptimes[rng.IntN(len(ptimes))]
		burst    time.Duration // the first packets wait for this one
		k        int
		sampleAt int
	)
	calm := seed%4 == 0 // no delayed start, no stall, spikes under 140 ms: the ring never grows
	if !calm {
		burst = time.Duration(rng.IntN(700)) * time.Millisecond
	}
	for send < 40*time.Second {
		if rng.IntN(400) == 0 {
			ptime = ptimes[rng.IntN(len(ptimes))]
		}
		n := ptime * ms
		switch r := rng.IntN(1000); {
		case r < 3: // a timestamp jump, forward or back
			ts += uint32(rng.IntN(20*rate) - 5*rate)
		case r < 4:
			ssrc++
		case r < 10:
			spike = time.Duration(rng.IntN(600)) * time.Millisecond
			if calm {
				spike = time.Duration(rng.IntN(140)) * time.Millisecond
			}
		case r < 14:
			rise = rng.IntN(300)
		}
		d := time.Duration(rng.Int64N(int64(jitter)+1)) + spike
		if rise > 0 {
			rise--
			riseD += 300 * time.Microsecond
			d = spike + riseD
		} else {
			riseD = max(0, riseD-time.Millisecond)
			d += riseD
		}
		if start := send + time.Duration(ptime)*time.Millisecond; k < 30 && start < burst {
			d = burst - send // the delayed start: these arrive together
		}
		spike = spike * 9 / 10
		payload := make([]T, n)
		for i := range payload {
			payload[i] = sample(sampleAt + i)
		}
		sampleAt += n
		at := send + time.Duration(ptime)*time.Millisecond + d + time.Duration(rng.IntN(1000))*time.Nanosecond
		if rng.Float64() >= lossP {
			s = append(s, pkt{at, Packet[T]{SSRC: ssrc, Sequence: seq, Timestamp: ts, Payload: payload}})
			if rng.IntN(50) == 0 { // duplicate
				s = append(s, pkt{at + time.Duration(rng.IntN(80))*time.Millisecond, s[len(s)-1].p})
			}
		}
		seq++
		ts += uint32(n)
		send += time.Duration(ptime) * time.Millisecond
		k++
	}
	slices.SortStableFunc(s, func(x, y pkt) int { return int(x.at - y.at) })

	// Playout stalls now and then: a frame due in a stall is popped when it
	// ends (the owner catches up frame by frame).
	type stall struct{ from, to time.Duration }
	var stalls []stall
	for at := time.Second; !calm && at < 40*time.Second; at += time.Duration(1+rng.IntN(8)) * time.Second {
		stalls = append(stalls, stall{at, at + time.Duration(50+rng.IntN(450))*time.Millisecond})
	}
	popAt := func(due time.Duration) time.Duration {
		for _, st := range stalls {
			if due >= st.from && due < st.to {
				return st.to
			}
		}
		return due
	}

	dstA, dstR := make([]T, a.frame), make([]T, a.frame)
	i, pops := 0, 0
	for {
		dueA, okA := a.NextDue()
		dueR, okR := ref.NextDue()
		if okA != okR || !dueA.Equal(dueR) {
			t.Fatalf("NextDue %v %v, with the old sizes %v %v", dueA, okA, dueR, okR)
		}
		when := popAt(dueA.Sub(t0))
		if i < len(s) && (!okA || s[i].at <= when) {
			pk := s[i].p
			pk.Arrival = t0.Add(s[i].at)
			if a.started && pk.SSRC == a.ssrc && a.p+int64(int32(pk.Timestamp-uint32(a.p)))+int64(len(pk.Payload)) > a.p+a.reach {
				jumped = true
			}
			if ra, rr := a.Push(pk), ref.Push(pk); ra != rr {
				t.Fatalf("packet %d: %v, with the old sizes %v", i, ra, rr)
			}
			checkKept(t, a, fmt.Sprintf("packet %d", i))
			minGrew = max(minGrew, len(a.minQ))
			i++
			continue
		}
		if !okA || when > 45*time.Second {
			break
		}
		now := t0.Add(when)
		fa, oka := a.Pop(now, dstA)
		fr, okr := ref.Pop(now, dstR)
		if fa != fr || oka != okr || !slices.Equal(dstA, dstR) {
			t.Fatalf("pop %d at %v: %+v %v, with the old sizes %+v %v (audio equal: %v)", pops, when, fa, oka, fr, okr, slices.Equal(dstA, dstR))
		}
		checkKept(t, a, fmt.Sprintf("pop %d", pops))
		pops++
	}
	if sa, sr := a.Stats(), ref.Stats(); sa != sr {
		t.Fatalf("stats %+v, with the old sizes %+v", sa, sr)
	}
	if !slices.Equal(a.hist, ref.hist) || a.minTail-a.minHead != ref.minTail-ref.minHead {
		t.Fatalf("window: %d minimum entries, with the old sizes %d", a.minTail-a.minHead, ref.minTail-ref.minHead)
	}
	for k := range a.minTail - a.minHead {
		if a.minQ[(a.minHead+k)&a.minMask] != ref.minQ[(ref.minHead+k)&ref.minMask] {
			t.Fatalf("minimum entry %d differs", k)
		}
	}
	if pops < 1500 {
		t.Fatalf("%d frames popped", pops)
	}
	return a.size > size0, jumped, minGrew
}

// checkKept holds what the buffer keeps instead of looking it up to what it
// would have looked up, after every Push and Pop of the schedules above: the
// percentile's bin and its running count (against the histogram summed from
// its first bin, as percentile did before), and plcBusy (against the
// concealer's own state), and the frame's newest arrival (against the block by
// block look-up Pop made before).
func checkKept[T Sample](t *testing.T, b *Buffer[T], at string) {
	t.Helper()
	cum := uint32(0)
	for _, c := range b.hist[:b.pBin+1] {
		cum += c
	}
	if cum != b.pCum {
		t.Fatalf("%s: the count up to bin %d is %d, kept %d", at, b.pBin, cum, b.pCum)
	}
	if p, scan := b.percentile(), b.percentileScan(); p != scan {
		t.Fatalf("%s: percentile %v, summed from the first bin %v", at, time.Duration(p), time.Duration(scan))
	}
	if b.started {
		// the frame's newest arrival, as Pop looked it up block by block
		old := int32(0)
		for s := b.p; s < b.p+b.frame; s += 1 << b.blockShift {
			old = max(old, b.arrival[b.block(s)])
		}
		old = max(old, b.arrival[b.block(b.p+b.frame-1)])
		if n := b.newestArrival(); n != old {
			t.Fatalf("%s: newest arrival %d, block by block %d", at, n, old)
		}
	}
	if busy := b.plc != nil && b.plc.Concealing(); b.plcBusy != busy {
		t.Fatalf("%s: plcBusy %v, the concealer says %v", at, b.plcBusy, busy)
	}
}

// markArrival stamps the same blocks as the loop write had before, over every
// position and length in a ring of 8 kHz and of 16 kHz blocks.
func TestMarkArrivalAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, rate := range []int{8000, 16000} {
		b := New(Options[int16]{Codec: PCM{}, SampleRate: rate})
		for range 20000 {
			for k := range b.arrival {
				b.arrival[k] = int32(rng.IntN(50))
			}
			i := int64(rng.IntN(int(b.size)))
			n := 1 + int64(rng.IntN(int(min(b.maxPayload, b.size-i))))
			a := int32(rng.IntN(50))
			want := slices.Clone(b.arrival)
			for blk := i >> b.blockShift; blk <= (i+n-1)>>b.blockShift; blk++ {
				if want[blk] < a {
					want[blk] = a
				}
			}
			b.markArrival(i, n, a)
			if !slices.Equal(b.arrival, want) {
				t.Fatalf("%d Hz: [%d, %d) at %d: blocks differ", rate, i, i+n, a)
			}
		}
	}
}
