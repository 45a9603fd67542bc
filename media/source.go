package media

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// SourcePolicy says where a stream accepts RTP and RTCP from. Before the first
// packet the stream accepts:
//
//   - the address the SDP names (any port: symmetric RTP then latches to the
//     exact address and port the packet came from, and sends there);
//   - with Latch, also the signalling source's address: a trunk behind NAT
//     whose SDP names an address its media does not come from;
//   - never an address outside Allow, when Allow is set (the trunk's networks).
//
// Whoever else sends to the port is refused and counted, so an attacker spraying
// the port range cannot take a call's audio by being first. Once latched, the
// source moves (re-latches) only when all of these hold, which an off-path
// attacker cannot meet: the newcomer is acceptable as above, the latched source
// has been silent for RelatchSilence, and the newcomer's packet continues the
// stream — the same SSRC and a sequence number just ahead of the last one (both
// random per call and unseen off the path). A re-INVITE that moves the media
// (SetRemote) starts over from its new SDP address. With SRTP the packets are
// authenticated before any of this.
//
// The zero SourcePolicy accepts only the SDP's address, from anywhere.
type SourcePolicy struct {
	// Allow are the networks media may come from; empty: no network limit.
	Allow []netip.Prefix
	// Signalling is the address the call's signalling came from; Latch accepts
	// media from it too.
	Signalling netip.Addr
	Latch      bool
	// Any accepts the first packet from any address in Allow (the old
	// behaviour, for a far end whose SDP cannot be trusted to name its source).
	Any bool
	// RelatchSilence is how long the latched source must have been silent
	// before another may take over (default 1 s).
	RelatchSilence time.Duration
	// Counters, when set, count across streams (the gateway's metrics).
	Counters *SourceCounters
}

// SourceCounters count the packets source checks decided on, across streams.
type SourceCounters struct {
	Refused   atomic.Uint64 // RTP and RTCP from an address the policy does not accept
	Ignored   atomic.Uint64 // RTP from an acceptable address other than the latched one
	Relatched atomic.Uint64 // times a stream's source moved without a re-INVITE
}

func (p *SourcePolicy) allows(a netip.Addr) bool {
	if len(p.Allow) == 0 {
		return true
	}
	for _, n := range p.Allow {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// acceptable: may media from a come in as a new source?
func (s *Stream) acceptable(a netip.Addr) bool {
	p := &s.opt.Sources
	if !p.allows(a) {
		return false
	}
	if p.Any {
		return true
	}
	if r := s.sdpRemote.Load(); r != nil && r.IsValid() && r.Addr() == a {
		return true
	}
	return p.Latch && p.Signalling.IsValid() && p.Signalling.Unmap() == a
}

// srcVerdict is what the source check decided about one RTP packet.
type srcVerdict uint8

const (
	srcOK       srcVerdict = iota // the latched source, or a first acceptable one
	srcRelatch                    // a new source that takes over
	srcRefused                    // not acceptable
	srcIgnored                    // acceptable, but not the latched source
	relatchWide = 50              // sequence numbers a new source may be ahead, beyond the silence's
)

// checkSource judges a packet's source; in.mu is held.
func (s *Stream) checkSource(now time.Time, from netip.AddrPort, pkt *rtp.Packet) srcVerdict {
	in := &s.in
	switch {
	case s.tr != nil:
		return srcOK // a transport has authenticated its packets; they have no address
	case in.latched && from == in.source:
		return srcOK
	case !s.acceptable(from.Addr()):
		return srcRefused
	case !in.latched:
		return srcOK
	}
	silent := now.Sub(in.lastRecv)
	if silent < s.opt.Sources.RelatchSilence || !in.haveSrc || pkt.SSRC != in.ssrc {
		return srcIgnored
	}
	ahead := pkt.SequenceNumber - in.maxSeq
	limit := min(relatchWide+int(silent/(10*time.Millisecond)), maxDropout)
	if ahead == 0 || int(ahead) > limit {
		return srcIgnored
	}
	return srcRelatch
}

// count adds a refusal to the stream's and the shared counters; in.mu is held.
func (s *Stream) countSource(v srcVerdict) {
	c := s.opt.Sources.Counters
	switch v {
	case srcRefused:
		s.in.refusedSource++
		if c != nil {
			c.Refused.Add(1)
		}
	case srcIgnored:
		s.in.ignoredSource++
		if c != nil {
			c.Ignored.Add(1)
		}
	case srcRelatch:
		s.in.relatched++
		if c != nil {
			c.Relatched.Add(1)
		}
	}
}
