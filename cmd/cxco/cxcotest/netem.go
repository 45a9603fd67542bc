package cxcotest

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Netem is one network impairment profile, with the meaning Linux's netem qdisc
// gives its parameters (tc-netem(8), net/sched/sch_netem.c): String is the tc
// command line that asks the kernel for the same.
//
// Per packet, in netem's order: it may be duplicated (Duplicate), then lost
// (Loss at random, or by the Gilbert-Elliott model GE; a duplicated packet loses
// one copy); each copy left is sent at once with probability Reorder (ahead of
// those still delayed), or else delayed by Delay plus a uniform jitter in
// [-Jitter, +Jitter]; copies leave in the order of their send times, so jitter
// larger than the packet interval reorders too.
type Netem struct {
	Name      string
	Delay     time.Duration
	Jitter    time.Duration
	Loss      float64
	GE        *GilbertElliott
	Reorder   float64
	Duplicate float64
	// Seed makes the profile's random decisions repeatable: every flow the
	// profile impairs sees the same sequence of decisions for its packets.
	Seed uint64
}

// GilbertElliott is netem's "loss gemodel p r 1-h 1-k": a good and a bad state,
// P from good to bad, R from bad to good, loss probability 1-H in the bad state
// and 1-K in the good one (defaults: H 0, K 1: the bad state loses everything,
// the good one nothing). The mean loss is P/(P+R)·(1-H) + R/(P+R)·(1-K), the
// mean burst in the bad state 1/R packets.
type GilbertElliott struct {
	P, R, H, K float64
}

// String is the equivalent netem qdisc command's parameters.
func (n Netem) String() string {
	var b strings.Builder
	pct := func(f float64) string { return fmt.Sprintf("%g%%", 100*f) }
	if n.Delay > 0 || n.Jitter > 0 {
		fmt.Fprintf(&b, " delay %s", n.Delay)
		if n.Jitter > 0 {
			fmt.Fprintf(&b, " %s", n.Jitter)
		}
	}
	switch {
	case n.GE != nil:
		fmt.Fprintf(&b, " loss gemodel %s %s %s %s", pct(n.GE.P), pct(n.GE.R), pct(1-n.GE.H), pct(1-n.GE.K))
	case n.Loss > 0:
		fmt.Fprintf(&b, " loss %s", pct(n.Loss))
	}
	if n.Reorder > 0 {
		fmt.Fprintf(&b, " reorder %s", pct(n.Reorder))
	}
	if n.Duplicate > 0 {
		fmt.Fprintf(&b, " duplicate %s", pct(n.Duplicate))
	}
	if b.Len() == 0 {
		return "none"
	}
	return "tc qdisc add dev $DEV root netem" + b.String()
}

// flowState is one flow's impairment: its profile's random source and the
// Gilbert-Elliott state, and what happened to its packets.
type flowState struct {
	prof     *Netem
	rng      *rand.Rand
	bad      bool
	lastLost bool
	anySent  bool
	leading  int // Lost before the first packet sent
	trailing int // Lost since the last packet sent
	FlowStats
}

// FlowStats is what the impairer did to one flow.
type FlowStats struct {
	Packets    int      // packets that came in
	Lost       int      // packets none of whose copies was sent
	Dropped    int      // copies lost (a duplicated packet can lose one of two)
	Duplicated int      // extra copies made
	Reordered  int      // sent at once, ahead of delayed ones
	LossRuns   int      // runs of consecutive Lost packets
	LostTS     []uint32 // the RTP timestamps of the Lost packets that were RTP
	// LostAtEnds are the Lost packets before the first and after the last
	// packet sent: a receiver's cumulative loss (RFC 3550 6.4.1, highest
	// sequence number seen less the packets received) cannot see them.
	LostAtEnds int
	DelaySum   time.Duration // of the copies sent
	Sent       int           // copies sent
}

// Summary is the counts, without the timestamps.
func (s FlowStats) Summary() string {
	return fmt.Sprintf("%d packets, %d lost in %d runs, %d copies dropped, %d duplicated, %d reordered, %d sent",
		s.Packets, s.Lost, s.LossRuns, s.Dropped, s.Duplicated, s.Reordered, s.Sent)
}

// MeanDelay is the mean delay of the copies sent.
func (s FlowStats) MeanDelay() time.Duration {
	if s.Sent == 0 {
		return 0
	}
	return s.DelaySum / time.Duration(s.Sent)
}

func (f *flowState) lost() bool {
	p := f.prof
	if ge := p.GE; ge != nil {
		// netem: the transition first, the loss by the state it left.
		if !f.bad {
			f.bad = f.rng.Float64() < ge.P
			return f.rng.Float64() < 1-ge.K
		}
		f.bad = f.rng.Float64() >= ge.R
		return f.rng.Float64() < 1-ge.H
	}
	return p.Loss > 0 && f.rng.Float64() < p.Loss
}

// Impairer is a userspace netem: the caller's side of a test network routes the
// traffic to impair into a TUN device, and the Impairer sends each packet on,
// impaired by the profile of its flow, through a packet socket on the caller's
// end of the veth pair. It is what a kernel without the netem qdisc (this
// machine's) uses instead, and what makes the impairment repeatable: netem's
// random numbers cannot be seeded.
type Impairer struct {
	tun    *os.File
	pkt    int // AF_PACKET socket
	ll     syscall.SockaddrLinklayer
	mu     sync.Mutex
	byPort map[uint16]*Netem // the caller's UDP port -> profile
	flows  map[flowKey]*flowState
	q      sendQueue
	wake   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	seq    uint64
	err    error
}

type flowKey struct {
	src, dst [4]byte
	sport    uint16
	dport    uint16
}

type queued struct {
	at  time.Time
	seq uint64
	pkt []byte
}

type sendQueue []queued

func (q sendQueue) Len() int { return len(q) }
func (q sendQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q sendQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *sendQueue) Push(x any)   { *q = append(*q, x.(queued)) }
func (q *sendQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

const (
	iffTUN    = 0x0001
	iffNoPI   = 0x1000
	tunSetIFF = 0x400454ca
	ethPIP    = 0x0800
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// StartImpairer opens the TUN device tun (created now, in the calling process's
// network namespace) and a packet socket on dev, whose peer has MAC address
// peerMAC. The caller brings tun up and routes into it. Close stops it.
func StartImpairer(tun, dev string, peerMAC net.HardwareAddr) (*Impairer, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var ifr [40]byte
	copy(ifr[:15], tun)
	binary.LittleEndian.PutUint16(ifr[16:], iffTUN|iffNoPI)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIFF, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", tun, e)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	ifc, err := net.InterfaceByName(dev)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	ps, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, int(htons(ethPIP)))
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	im := &Impairer{tun: os.NewFile(uintptr(fd), tun), pkt: ps, byPort: map[uint16]*Netem{}, flows: map[flowKey]*flowState{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	im.ll = syscall.SockaddrLinklayer{Protocol: htons(ethPIP), Ifindex: ifc.Index, Halen: uint8(len(peerMAC))}
	copy(im.ll.Addr[:], peerMAC)
	im.wg.Add(2)
	go im.read()
	go im.send()
	return im, nil
}

// Assign impairs the UDP packets the caller sends from port with p (the others
// pass unimpaired).
func (im *Impairer) Assign(port int, p *Netem) {
	im.mu.Lock()
	im.byPort[uint16(port)] = p
	im.mu.Unlock()
}

// Stats returns what was done to the flows the caller sent from port.
func (im *Impairer) Stats(port int) FlowStats {
	im.mu.Lock()
	defer im.mu.Unlock()
	var s FlowStats
	for k, f := range im.flows {
		if k.sport == uint16(port) {
			s = f.FlowStats
			s.LostTS = append([]uint32(nil), f.LostTS...)
			s.LostAtEnds = f.leading + f.trailing
		}
	}
	return s
}

// Err is the first error sending failed with, if any.
func (im *Impairer) Err() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.err
}

// Close stops the impairer and drops what it still holds.
func (im *Impairer) Close() {
	select {
	case <-im.done:
		return
	default:
	}
	close(im.done)
	im.tun.Close()
	im.wg.Wait()
	syscall.Close(im.pkt)
}

func (im *Impairer) read() {
	defer im.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := im.tun.Read(buf)
		if err != nil {
			return
		}
		im.handle(time.Now(), append([]byte(nil), buf[:n]...))
	}
}

// handle impairs one IP packet from the TUN device.
func (im *Impairer) handle(now time.Time, p []byte) {
	im.mu.Lock()
	defer im.mu.Unlock()
	f := im.flow(p)
	if f == nil {
		im.queue(now, p)
		return
	}
	f.Packets++
	copies := 1
	if f.prof.Duplicate > 0 && f.rng.Float64() < f.prof.Duplicate {
		copies++
		f.Duplicated++
	}
	if f.lost() {
		copies--
		f.Dropped++
	}
	if copies == 0 {
		f.Lost++
		if ihl := int(p[0]&0x0f) * 4; len(p) >= ihl+8+12 && p[ihl+8]>>6 == 2 {
			f.LostTS = append(f.LostTS, binary.BigEndian.Uint32(p[ihl+8+4:]))
		}
		if !f.lastLost {
			f.LossRuns++
		}
	}
	f.lastLost = copies == 0
	switch {
	case copies > 0:
		f.anySent, f.trailing = true, 0
	case f.anySent:
		f.trailing++
	default:
		f.leading++
	}
	for range copies {
		d := time.Duration(0)
		if f.prof.Reorder > 0 && f.rng.Float64() < f.prof.Reorder {
			f.Reordered++
		} else {
			d = f.prof.Delay
			if j := f.prof.Jitter; j > 0 {
				d += time.Duration(f.rng.Int64N(int64(2*j))) - j
			}
			d = max(d, 0)
		}
		f.Sent++
		f.DelaySum += d
		im.queue(now.Add(d), p)
	}
}

// flow returns the state of the UDP flow p belongs to, nil if it is not to be
// impaired.
func (im *Impairer) flow(p []byte) *flowState {
	if len(p) < 28 || p[0]>>4 != 4 || p[9] != syscall.IPPROTO_UDP {
		return nil
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+8 {
		return nil
	}
	var k flowKey
	copy(k.src[:], p[12:16])
	copy(k.dst[:], p[16:20])
	k.sport = binary.BigEndian.Uint16(p[ihl:])
	k.dport = binary.BigEndian.Uint16(p[ihl+2:])
	if f, ok := im.flows[k]; ok {
		return f
	}
	prof := im.byPort[k.sport]
	if prof == nil {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte(prof.Name))
	seed := prof.Seed ^ h.Sum64()
	f := &flowState{prof: prof, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	im.flows[k] = f
	return f
}

func (im *Impairer) queue(at time.Time, p []byte) {
	im.seq++
	heap.Push(&im.q, queued{at: at, seq: im.seq, pkt: p})
	select {
	case im.wake <- struct{}{}:
	default:
	}
}

// send writes the queued packets onto the veth at their times.
func (im *Impairer) send() {
	defer im.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		im.mu.Lock()
		var due [][]byte
		now := time.Now()
		for im.q.Len() > 0 && !im.q[0].at.After(now) {
			due = append(due, heap.Pop(&im.q).(queued).pkt)
		}
		wait := time.Hour
		if im.q.Len() > 0 {
			wait = im.q[0].at.Sub(now)
		}
		im.mu.Unlock()
		for _, p := range due {
			if err := syscall.Sendto(im.pkt, p, 0, &im.ll); err != nil && !errors.Is(err, syscall.ENOBUFS) {
				im.mu.Lock()
				if im.err == nil {
					im.err = fmt.Errorf("impairer: send on the veth: %w", err)
				}
				im.mu.Unlock()
			}
		}
		timer.Reset(wait)
		select {
		case <-im.done:
			return
		case <-im.wake:
		case <-timer.C:
		}
	}
}
