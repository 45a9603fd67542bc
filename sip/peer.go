package sip

import (
	"context"
	"log/slog"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// CallInfo is what the far side learns about a call when it is set up.
type CallInfo struct {
	ConversationID int64
	Company        *store.Company
	Agent          *store.Agent
	Caller         string // E.164 when the trunk sent a number, else the From user
	Called         string // E.164
	SIPCallID      string
	Log            *slog.Logger
}

// Connector opens the far side of an agent call before it is answered (the bridge
// connects the voice-AI provider). An error ends the INVITE with 503, or with the
// status of a *Status error.
type Connector interface {
	Connect(ctx context.Context, info *CallInfo) (Peer, error)
}

// Peer is the far side of one call: the AI agent or the echo line.
type Peer interface {
	// Format is the audio format the peer consumes and produces.
	Format() media.Format
	// Start is called once the call is answered. From then on caller audio arrives
	// through OnAudio and digits through OnDigit, both on media goroutines: they
	// must not block. The peer plays audio with call.Play.
	Start(call Call) error
	OnAudio(f media.Frame)
	OnDigit(d media.Digit)
	// Done is closed when the peer ends the call; End then says why.
	Done() <-chan struct{}
	End() PeerEnd
	// Close ends the peer's side because the call is over (reason is the call's end
	// reason) and waits for its goroutines.
	Close(reason string)
}

// PeerEnd is how a peer ended a call.
type PeerEnd struct {
	Reason string // an end reason, e.g. EndAgentHangup or EndProviderError
	Failed bool   // the call failed (recorded as failed, not completed)
	// Status, ReferTo and ReferSeconds record a transfer (status transferred).
	Status       string
	ReferTo      string
	ReferSeconds int
}

// Call is what a peer can do with the call it serves.
type Call interface {
	// Play queues audio in the peer's format; Flush drops everything queued (barge-in);
	// Drained is closed once everything queued has been played.
	Play(audio []byte) error
	Flush() int
	Drained() <-chan struct{}
	// AnsweredAt is when the call was answered (transcript timestamps count from it).
	AnsweredAt() time.Time
	// Hangup ends the call with a BYE, recording reason.
	Hangup(reason string)
	// Transfer hands the caller to target (E.164 or sip: URI) with a SIP REFER, or by
	// bridging an outbound call when bridge is true; it returns when the transfer
	// has succeeded (the call then ends as transferred) or failed (the call goes on).
	Transfer(ctx context.Context, target string, bridge bool) error
}
