package sip

import (
	"context"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/store"
)

// Calls is what sip needs from the rest of the gateway to take a call: where a
// dialled number goes, and a record of each call (callstore implements it over
// the store).
type Calls interface {
	// Route finds where a dialled number (E.164) goes; a *callpath.Refusal
	// refuses the call with its status.
	Route(ctx context.Context, number string) (callpath.Route, error)
	// Started records a call being taken (in progress); its Record follows it
	// to the end.
	Started(ctx context.Context, s callpath.Start) (callpath.Record, error)
}

// LiveStore is where the node publishes its live calls and hears hang-up
// requests (*store.Store).
type LiveStore interface {
	PutLiveCalls(ctx context.Context, calls []store.LiveCall) error
	EndLiveCalls(ctx context.Context, calls []store.LiveCall) error
	SubscribeLive(ctx context.Context) (<-chan store.LiveEvent, error)
}

// TraceStore keeps each conversation's SIP ladder (*store.Store).
type TraceStore interface {
	AppendSIPTraces(ctx context.Context, batches []store.SIPTraceBatch, max int, keep time.Duration) error
}
