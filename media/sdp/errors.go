package sdp

import "errors"

var (
	// ErrMalformed means the SDP could not be parsed (SIP 400).
	ErrMalformed = errors.New("sdp: malformed")
	// ErrNoCommonCodec means no audio stream offers a codec we take
	// (SIP 488).
	ErrNoCommonCodec = errors.New("sdp: no common codec")
	// ErrSRTPRequired means the offer or answer has only plain RTP, and the
	// policy requires SRTP (SIP 488).
	ErrSRTPRequired = errors.New("sdp: SRTP required, plain RTP offered")
	// ErrSRTPUnusable means the far end demands SRTP (RTP/SAVP) that we
	// cannot do: SRTP is disabled, or no a=crypto line has a suite and key
	// we take (SIP 488).
	ErrSRTPUnusable = errors.New("sdp: SRTP offered that we cannot use")
)
