package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"time"

	"github.com/cxco/gateway/media/g711"
)

// The caller's audio: 20 ms G.711 packets (160 samples, 8 kHz), which SIPp's
// rtp_stream plays from a raw file (SIPp packetizes PCMU and PCMA at 160 bytes per
// 20 ms). It is a talker: a two-tone "utterance", then silence long enough (> 500 ms)
// for the simulator to answer with its echo, over and over.
const (
	frameMS   = 20
	frameSize = 160
	rtpHdr    = 12
	etherHdr  = 14
	ipv4Hdr   = 20
	udpHdr    = 8
)

// writeAudio writes one talk+gap period of G.711 (payload type pt: 0 PCMU, 8 PCMA).
func writeAudio(path string, pt uint8, talk, gap time.Duration) error {
	period := int((talk + gap) / (frameMS * time.Millisecond))
	talkFrames := int(talk / (frameMS * time.Millisecond))
	pcm := make([]int16, period*frameSize)
	for i := range pcm {
		if i >= talkFrames*frameSize {
			break
		}
		t := float64(i) / 8000
		// Two tones, slowly modulated: something like a voiced vowel.
		env := 0.6 + 0.4*math.Sin(2*math.Pi*3*t)
		pcm[i] = int16(6000 * env * (math.Sin(2*math.Pi*440*t) + 0.5*math.Sin(2*math.Pi*1100*t)))
	}
	out := make([]byte, len(pcm))
	if pt == 8 {
		g711.PCMToALaw(out, pcm)
	} else {
		g711.PCMToULaw(out, pcm)
	}
	return os.WriteFile(path, out, 0o644)
}

// flowKey is one RTP stream on the wire: addresses, ports and SSRC.
type flowKey struct {
	src, dst [4]byte
	sport    uint16
	dport    uint16
	ssrc     uint32
}

// flow is what the capture saw of one stream.
type flow struct {
	packets  int
	startExt int64 // extended sequence number of the first packet
	lastExt  int64 // extended sequence number of the newest packet
	minExt   int64
	maxExt   int64
	seen     map[int64]struct{}
	dups     int
	firstAt  time.Time
	lastAt   time.Time
	maxGap   time.Duration // longest time between two packets
	longGaps int           // gaps over 60 ms (3 packet times)
	gaps     gapHist       // every time between two packets
	transits []int32       // arrival minus the packet's place on a 20 ms clock, µs
}

// rtpLeg sums the flows of one direction.
type rtpLeg struct {
	Flows      int
	Packets    int
	Expected   int // by sequence numbers: max - min + 1 of each flow
	Lost       int // Expected - distinct packets
	Duplicates int
	LongGaps   int           // times a flow went > 60 ms without a packet
	MaxGap     time.Duration // the longest
	// Gaps is the distribution of the time between two consecutive packets
	// of a stream, all streams together: what a caller's jitter buffer sees of
	// the sender's pacing.
	Gaps gapHist
	// ByTime is what 50 packets a second over each flow's life would be (a pacer
	// that skips ticks without skipping sequence numbers shows here).
	ByTime int
	// Delayed20 and Delayed40: packets that reached the wire more than 20 (40) ms
	// later than the fastest packet of the 4 s before them would have put them (the
	// sender's jitter, as a jitter buffer at that depth would see it).
	Delayed20, Delayed40 int
}

// captureStats reads a pcap written by dumpcap and sums RTP per direction: towards
// the gateway's RTP ports (lo..hi) is upstream, from them downstream. RTCP (odd
// gateway ports) and non-RTP are skipped.
func captureStats(path string, lo, hi int) (up, down rtpLeg, err error) {
	f, err := os.Open(path)
	if err != nil {
		return up, down, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var gh [24]byte
	if _, err := io.ReadFull(r, gh[:]); err != nil {
		return up, down, fmt.Errorf("pcap header: %w", err)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	nano := false
	switch binary.LittleEndian.Uint32(gh[:]) {
	case 0xa1b2c3d4:
	case 0xa1b23c4d:
		nano = true
	case 0xd4c3b2a1:
		bo = binary.BigEndian
	case 0x4d3cb2a1:
		bo, nano = binary.BigEndian, true
	default:
		return up, down, fmt.Errorf("%s: not a pcap file (dumpcap -F pcap)", path)
	}
	link := bo.Uint32(gh[20:])
	hdrLen := 0
	switch link {
	case 1: // Ethernet (Linux loopback)
		hdrLen = etherHdr
	case 113: // Linux cooked
		hdrLen = 16
	case 0: // BSD loopback
		hdrLen = 4
	default:
		return up, down, fmt.Errorf("pcap link type %d not handled", link)
	}
	flows := map[flowKey]*flow{}
	buf := make([]byte, 0, 256)
	var rh [16]byte
	for {
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			return up, down, err
		}
		incl := int(bo.Uint32(rh[8:]))
		if incl > 1<<16 {
			return up, down, fmt.Errorf("pcap record of %d bytes", incl)
		}
		if cap(buf) < incl {
			buf = make([]byte, incl)
		}
		buf = buf[:incl]
		if _, err := io.ReadFull(r, buf); err != nil {
			break
		}
		sub := int64(bo.Uint32(rh[4:]))
		if !nano {
			sub *= 1000
		}
		at := time.Unix(int64(bo.Uint32(rh[0:])), sub)
		p := buf
		if len(p) < hdrLen+ipv4Hdr+udpHdr+rtpHdr {
			continue
		}
		ip := p[hdrLen:]
		if ip[0]>>4 != 4 || ip[9] != 17 {
			continue
		}
		ihl := int(ip[0]&0x0f) * 4
		if len(ip) < ihl+udpHdr+rtpHdr {
			continue
		}
		udp := ip[ihl:]
		sport, dport := binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:])
		rtp := udp[udpHdr:]
		if rtp[0]>>6 != 2 || rtp[1]&0x7f >= 72 && rtp[1]&0x7f <= 76 {
			continue // not RTP, or RTCP
		}
		gwPort := int(dport)
		if int(sport) >= lo && int(sport) <= hi {
			gwPort = int(sport)
		}
		if gwPort < lo || gwPort > hi || gwPort%2 != 0 {
			continue
		}
		k := flowKey{sport: sport, dport: dport, ssrc: binary.BigEndian.Uint32(rtp[8:])}
		copy(k.src[:], ip[12:16])
		copy(k.dst[:], ip[16:20])
		fl := flows[k]
		if fl == nil {
			fl = &flow{seen: map[int64]struct{}{}}
			flows[k] = fl
		}
		fl.add(binary.BigEndian.Uint16(rtp[2:]), at)
	}
	for k, fl := range flows {
		leg := &up
		if int(k.sport) >= lo && int(k.sport) <= hi {
			leg = &down
		}
		leg.Flows++
		leg.Packets += fl.packets
		exp := int(fl.maxExt-fl.minExt) + 1
		leg.Expected += exp
		leg.Lost += exp - len(fl.seen)
		leg.Duplicates += fl.dups
		leg.LongGaps += fl.longGaps
		leg.MaxGap = max(leg.MaxGap, fl.maxGap)
		leg.Gaps.merge(&fl.gaps)
		leg.ByTime += int(fl.lastAt.Sub(fl.firstAt)/(frameMS*time.Millisecond)) + 1
		// Against the fastest packet of the previous 4 s (the jitter buffer's
		// baseline): a sender that re-phases after a stall is not counted late
		// for the rest of the call.
		var q []int // indexes into transits, increasing transit
		for i, t := range fl.transits {
			for len(q) > 0 && q[0] < i-200 {
				q = q[1:]
			}
			if len(q) > 0 {
				if d := t - fl.transits[q[0]]; d > 20000 {
					leg.Delayed20++
					if d > 40000 {
						leg.Delayed40++
					}
				}
			}
			for len(q) > 0 && fl.transits[q[len(q)-1]] >= t {
				q = q[:len(q)-1]
			}
			q = append(q, i)
		}
	}
	return up, down, nil
}

// minExtStart is the first packet's extended sequence number.
func (f *flow) minExtStart() int64 { return f.startExt }

func (f *flow) add(seq uint16, at time.Time) {
	if f.packets == 0 {
		f.startExt = int64(seq)
		f.lastExt, f.minExt, f.maxExt = int64(seq), int64(seq), int64(seq)
		f.firstAt, f.lastAt = at, at
	} else {
		ext := f.lastExt + int64(int16(seq-uint16(f.lastExt)))
		f.lastExt = ext
		f.minExt, f.maxExt = min(f.minExt, ext), max(f.maxExt, ext)
		g := at.Sub(f.lastAt)
		f.maxGap = max(f.maxGap, g)
		f.gaps.add(g)
		if g > 3*frameMS*time.Millisecond {
			f.longGaps++
		}
		f.lastAt = at
	}
	f.packets++
	f.transits = append(f.transits, int32(at.Sub(f.firstAt).Microseconds()-(f.lastExt-f.minExtStart())*frameMS*1000))
	if _, ok := f.seen[f.lastExt]; ok {
		f.dups++
	} else {
		f.seen[f.lastExt] = struct{}{}
	}
}

// gapHist counts inter-packet gaps in 0.1 ms bins up to 200 ms (and one bin
// for anything longer).
type gapHist struct {
	bins [2001]int64
	n    int64
}

func (h *gapHist) add(g time.Duration) {
	i := int(g / (100 * time.Microsecond))
	h.bins[min(max(i, 0), len(h.bins)-1)]++
	h.n++
}

func (h *gapHist) merge(o *gapHist) {
	for i, c := range o.bins {
		h.bins[i] += c
	}
	h.n += o.n
}

// Percentile is the gap below which a share p of the gaps fall (the bin's
// upper edge); 0 for no gaps.
func (h *gapHist) Percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	k := int64(math.Ceil(p * float64(h.n)))
	var sum int64
	for i, c := range h.bins {
		sum += c
		if sum >= k {
			return time.Duration(i+1) * 100 * time.Microsecond
		}
	}
	return time.Duration(len(h.bins)) * 100 * time.Microsecond
}

// Over is how many gaps were longer than d.
func (h *gapHist) Over(d time.Duration) int64 {
	var n int64
	for i := int(d/(100*time.Microsecond)) + 1; i < len(h.bins); i++ {
		n += h.bins[i]
	}
	return n
}

// percentile of sorted-in-place values.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	i := int(math.Ceil(p*float64(len(v)))) - 1
	return v[max(0, min(len(v)-1, i))]
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
