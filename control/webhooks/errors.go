package webhooks

import "errors"

// Errors of signature verification (VerifySignature).
var (
	ErrSignatureMalformed = errors.New("webhook signature: malformed X-CXCO-Signature header")
	ErrSignatureExpired   = errors.New("webhook signature: timestamp outside the tolerance")
	ErrSignatureMismatch  = errors.New("webhook signature: no v1 signature matches")
)

// ErrForbiddenAddress: a webhook target resolved to an address deliveries may not go
// to (private, loopback, link-local, metadata; see control.ForbiddenAddr).
var ErrForbiddenAddress = errors.New("webhook target address is not allowed")
