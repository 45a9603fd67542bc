package sip

import (
	"context"
	"errors"

	gsip "github.com/emiago/sipgo/sip"
)

// transferState follows one transfer under way (the transfer issue fills it in).
type transferState struct{}

// ErrTransferUnsupported: this build cannot transfer calls yet.
var ErrTransferUnsupported = errors.New("sip: call transfer is not available")

// Transfer implements Call.
func (c *call) Transfer(ctx context.Context, target string, bridge bool) error {
	return ErrTransferUnsupported
}

// onReferNotify takes a NOTIFY of a transfer; false when there is none.
func (c *call) onReferNotify(req *gsip.Request) bool { return false }
