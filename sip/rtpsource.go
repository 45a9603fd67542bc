package sip

import (
	"net/netip"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// rtpSources is the source policy of a call's media (see media.SourcePolicy):
// RTP only from the trunk's networks, from the address its SDP names, and, when
// its NAT latching policy allows (or, when it has none, the gateway's
// --rtp-latching), from the address its signalling came from.
func (s *Server) rtpSources(tr *trunk, signalling netip.Addr) media.SourcePolicy {
	p := media.SourcePolicy{Signalling: signalling, Latch: s.latches(tr), Counters: s.opt.RTPSources}
	if tr != nil {
		p.Allow = tr.prefixes
	}
	return p
}

// latches says whether a trunk's media may come from its signalling address.
func (s *Server) latches(tr *trunk) bool {
	policy := s.opt.RTPLatching
	if tr != nil && tr.NAT.Latching != store.LatchDefault {
		policy = tr.NAT.Latching
	}
	return policy == store.LatchSource
}

// warnMediaSource says at call setup when the trunk's media will be refused:
// the SDP names an address outside the trunk's networks, or a private address
// of a trunk signalling from a public one (behind NAT) without latching.
func (c *call) warnMediaSource(remote netip.AddrPort) {
	a := remote.Addr().Unmap()
	if !remote.IsValid() || a.IsUnspecified() || c.trunk == nil {
		return
	}
	pol := c.s.rtpSources(c.trunk, netip.Addr{})
	src, _ := netip.ParseAddrPort(c.source)
	switch {
	case len(pol.Allow) > 0 && !inPrefixes(pol.Allow, a) && !pol.Latch:
		c.log.Warn("the SDP's media address is outside the trunk's allowed networks: its RTP will be refused; add the carrier's media networks to the trunk's allow list",
			"sdp_address", a.String(), "trunk", c.trunk.Name)
	case a.IsPrivate() && src.IsValid() && !src.Addr().Unmap().IsPrivate() && !src.Addr().Unmap().IsLoopback() && !pol.Latch:
		c.log.Warn("the SDP names a private media address while the trunk signals from a public one (behind NAT?): its RTP will be refused unless the trunk's nat.latching is signalling_source (or --rtp-latching)",
			"sdp_address", a.String(), "source", src.Addr().String(), "trunk", c.trunk.Name)
	}
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
