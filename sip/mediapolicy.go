package sip

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
	"github.com/cxco/gateway/store"
)

// mediaPolicy is the offer/answer policy of a trunk's calls: its codecs in its
// order of preference (those this build cannot carry left out: opus where
// libopus does not load) and its SRTP policy. A trunk that names its codecs
// gets them in its order, whatever the caller's (an HD trunk's G722,PCMU takes
// G.722 from a carrier that lists PCMU first, as carriers do); a trunk that
// names none takes PCMU and PCMA in the caller's order, as a SIP answerer
// usually does (RFC 3264 §6.1) and as the gateway always did.
func mediaPolicy(t *store.Trunk) sdp.Policy {
	srtp, err := sdp.ParseSRTPPolicy(t.SRTPPolicy())
	if err != nil { // the store validates trunks; a bad one fails closed
		srtp = sdp.SRTPRequired
	}
	if len(t.Codecs) == 0 {
		return sdp.Policy{SRTP: srtp}
	}
	have := media.Codecs()
	var codecs []string
	for _, c := range t.CodecList() {
		if slices.Contains(have, c) {
			codecs = append(codecs, c)
		}
	}
	if len(codecs) == 0 {
		// Only codecs we cannot carry: negotiate them anyway, so that the
		// call is refused with a 488 that says why (unavailable).
		codecs = t.CodecList()
	}
	return sdp.Policy{Codecs: codecs, SRTP: srtp}
}

// errUnavailableCodec is a codec the trunk lists that this build cannot carry.
var errUnavailableCodec = errors.New("codec not available in this build")

// notAcceptable is the 488 for an offer the policy refuses, with a Reason
// (RFC 3326) and a Warning (RFC 3261 §20.43) that say why.
func notAcceptable(req *gsip.Request, err error, p sdp.Policy) *gsip.Response {
	var warn, text string
	switch {
	case errors.Is(err, sdp.ErrSRTPRequired):
		warn, text = "302", "SRTP required: this trunk takes no plain RTP (offer RTP/SAVP with a=crypto)"
	case errors.Is(err, sdp.ErrSRTPUnusable) && p.SRTP == sdp.SRTPDisabled:
		warn, text = "302", "SRTP is disabled on this trunk: offer RTP/AVP"
	case errors.Is(err, sdp.ErrSRTPUnusable):
		warn, text = "302", "no usable a=crypto: we take AES_CM_128_HMAC_SHA1_80 and _32 with one inline key, no MKI"
	case errors.Is(err, errUnavailableCodec):
		warn, text = "305", err.Error()
	default:
		codecs := p.Codecs
		if len(codecs) == 0 {
			codecs = sdp.DefaultCodecs
		}
		warn, text = "305", "no common codec: this trunk takes "+strings.Join(codecs, ", ")
	}
	res := gsip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil)
	res.AppendHeader(gsip.NewHeader("Reason", fmt.Sprintf("SIP;cause=488;text=%q", text)))
	res.AppendHeader(gsip.NewHeader("Warning", fmt.Sprintf("%s cxco %q", warn, text)))
	return res
}

// available checks that the negotiated codec is one this build carries.
func available(n sdp.Negotiated) error {
	if !slices.Contains(media.Codecs(), n.Codec.Name) {
		return fmt.Errorf("%w: %s (libopus is not loaded here)", errUnavailableCodec, n.Codec.Name)
	}
	return nil
}
