package sdp

import "errors"

var (
	// ErrMalformed means the SDP could not be parsed (SIP 400).
	ErrMalformed = errors.New("sdp: malformed")
	// ErrNoCommonCodec means no audio stream offers PCMU or PCMA over
	// RTP/AVP at 8000 Hz (SIP 488).
	ErrNoCommonCodec = errors.New("sdp: no common codec")
)
