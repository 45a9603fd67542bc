package sip

import "errors"

// Sentinel errors.
var (
	ErrClosed = errors.New("sip: server closed")
)
