package sip

import (
	"errors"
	"fmt"
)

// Sentinel errors.
var (
	ErrClosed = errors.New("sip: server closed")
)

// Status is an error that ends an INVITE with a SIP final response and records an end reason.
type Status struct {
	Code       int
	Reason     string // reason phrase
	EndReason  string // recorded on the conversation (e.g. "provider_unavailable")
	RetryAfter int    // seconds; 0 = no Retry-After header
	Err        error  // the cause, if any
}

func (s *Status) Error() string {
	if s.Err != nil {
		return fmt.Sprintf("%d %s (%s): %v", s.Code, s.Reason, s.EndReason, s.Err)
	}
	return fmt.Sprintf("%d %s (%s)", s.Code, s.Reason, s.EndReason)
}

func (s *Status) Unwrap() error { return s.Err }

// Reject makes a Status.
func Reject(code int, reason, endReason string, cause error) *Status {
	return &Status{Code: code, Reason: reason, EndReason: endReason, Err: cause}
}

// End reasons recorded on conversations.
const (
	EndCallerHangup     = "caller_hangup"    // BYE from the caller
	EndAgentHangup      = "agent_hangup"     // the agent ended the call (end_call)
	EndCancelled        = "caller_cancelled" // CANCEL before answer
	EndMaxDuration      = "max_duration"     // config.max_call_duration_seconds
	EndRTPTimeout       = "rtp_timeout"      // no RTP for --rtp-timeout
	EndNoACK            = "no_ack"           // our 200 was never acknowledged
	EndProviderError    = "provider_error"   // provider failed mid-call
	EndProviderDown     = "provider_unavailable"
	EndShutdown         = "shutdown"        // drain timeout or a second signal
	EndTransferred      = "transferred"     // REFER succeeded
	EndTransferHangup   = "transfer_ended"  // a bridged transfer ended
	EndSessionExpired   = "session_expired" // RFC 4028 refresh missed
	EndInternal         = "internal_error"
	EndMediaUnavailable = "media_unavailable" // no RTP ports
	EndAPIHangup        = "api_hangup"        // hung up from the API or the dashboard (DELETE /api/calls/live/{id})
)
