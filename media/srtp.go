package media

import (
	"fmt"

	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/srtp/v3"
)

// SRTP (RFC 3711) with the keys SDES settled (media/sdp). A stream holds four
// contexts, one per direction and protocol, because each is used by one
// goroutine only: inbound RTP by the RTP reader, inbound RTCP by the RTCP
// reader, outbound RTP by the pacer and outbound RTCP by the RTCP timer (or
// Close, after the timers stopped). A context is swapped whole (atomically)
// when a re-INVITE brings new keys.

// replayWindow is the SRTP and SRTCP replay window in packets (RFC 3711 §3.3.2
// asks for at least 64).
const replayWindow = 128

func profileOf(suite string) (srtp.ProtectionProfile, error) {
	switch suite {
	case sdp.SuiteAES80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, nil
	case sdp.SuiteAES32:
		return srtp.ProtectionProfileAes128CmHmacSha1_32, nil
	}
	return 0, fmt.Errorf("%w: suite %q", ErrSRTP, suite)
}

// srtpPair is one direction's contexts.
type srtpPair struct {
	rtp, rtcp *srtp.Context
	suite     string
	key       sdp.Key
}

// newSRTPPair makes one direction's RTP and RTCP contexts; inbound ones check
// for replays.
func newSRTPPair(suite string, key sdp.Key, inbound bool) (*srtpPair, error) {
	p, err := profileOf(suite)
	if err != nil {
		return nil, err
	}
	var ro, co []srtp.ContextOption
	if inbound {
		ro = append(ro, srtp.SRTPReplayProtection(replayWindow))
		co = append(co, srtp.SRTCPReplayProtection(replayWindow))
	}
	r, err := srtp.CreateContext(key.MasterKey(), key.MasterSalt(), p, ro...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSRTP, err)
	}
	c, err := srtp.CreateContext(key.MasterKey(), key.MasterSalt(), p, co...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSRTP, err)
	}
	return &srtpPair{rtp: r, rtcp: c, suite: suite, key: key}, nil
}

// setSRTP installs the contexts for n's keys, keeping a direction whose
// suite and key did not change (its rollover counter and replay window go on).
func (s *Stream) setSRTP(n *sdp.SRTP) error {
	if cur := s.srtpIn.Load(); cur == nil || cur.suite != n.Suite || cur.key != n.Remote {
		in, err := newSRTPPair(n.Suite, n.Remote, true)
		if err != nil {
			return err
		}
		s.srtpIn.Store(in)
	}
	if cur := s.srtpOut.Load(); cur == nil || cur.suite != n.Suite || cur.key != n.Local {
		out, err := newSRTPPair(n.Suite, n.Local, false)
		if err != nil {
			return err
		}
		s.srtpOut.Store(out)
	}
	return nil
}
