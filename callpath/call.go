// Package callpath is the call path's shared vocabulary and its one supervisor.
//
// A call has a leg — the person on it: a SIP dialog (package sip), a browser's
// peer connection (bridge's test calls), or the far leg of a bridged transfer —
// and a peer the caller talks to: the voice-AI agent (bridge.Session), the echo
// line, or, after a bridged transfer, that far leg. Whatever ends a call —
// the caller hanging up, the agent ending it, a transfer, max duration, RTP
// inactivity, an API hang-up, shutdown — comes to one place, Call.End, and one
// goroutine, Call.Run, ends it once: BYE (or closing the peer connection), the
// peer closed, media closed; the caller records it.
package callpath

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// Reason says why a call ended (or was refused); conversations record it as
// end_reason.
type Reason string

// End reasons.
const (
	CallerHangup     Reason = "caller_hangup"        // BYE from the caller, or the browser hung up
	AgentHangup      Reason = "agent_hangup"         // the agent ended the call (end_call)
	Cancelled        Reason = "caller_cancelled"     // CANCEL before answer
	MaxDuration      Reason = "max_duration"         // config.max_call_duration_seconds
	RTPTimeout       Reason = "rtp_timeout"          // no RTP for --rtp-timeout
	NoACK            Reason = "no_ack"               // our 200 was never acknowledged
	ProviderError    Reason = "provider_error"       // the provider failed mid-call
	ProviderDown     Reason = "provider_unavailable" // the provider could not be reached at the INVITE
	Shutdown         Reason = "shutdown"             // drain timeout or a second signal
	Transferred      Reason = "transferred"          // a transfer succeeded
	TransferHangup   Reason = "transfer_ended"       // a bridged transfer ended
	SessionExpired   Reason = "session_expired"      // RFC 4028 refresh missed
	Internal         Reason = "internal_error"
	MediaUnavailable Reason = "media_unavailable" // no RTP ports
	APIHangup        Reason = "api_hangup"        // hung up from the API or the dashboard
	BadSDP           Reason = "bad_sdp"

	// Outbound calls.
	CalleeHangup Reason = "callee_hangup" // BYE from the person we called
	NoAnswer     Reason = "no_answer"     // the ring timeout passed: we sent CANCEL
	CalleeBusy   Reason = "busy"          // 486 Busy Here, 600 Busy Everywhere
	Declined     Reason = "rejected"      // 603 Decline and other refusals
	DialFailed   Reason = "dial_failed"   // the trunk or network failed the INVITE (sip_status says how)
	// VoicemailLeft: machine_detection leave_message played its message to a
	// machine after the beep and hung up; VoicemailFailed: it could not (the
	// provider could not be reached or told what to say, or sent no audio).
	VoicemailLeft   Reason = "voicemail_left"
	VoicemailFailed Reason = "voicemail_failed"

	// Refusals at the INVITE.
	UnknownNumber       Reason = "unknown_number"
	UnassignedNumber    Reason = "unassigned_number"
	AgentArchived       Reason = "agent_archived"
	AgentPaused         Reason = "agent_paused"
	AgentDraft          Reason = "agent_draft"
	AgentNotProvisioned Reason = "agent_not_provisioned"
	CompanySuspended    Reason = "company_suspended"
	AtCapacity          Reason = "at_capacity"
	Draining            Reason = "draining"
	StoreUnavailable    Reason = "store_unavailable"
	UnknownTrunk        Reason = "unknown_trunk"

	// Browser test calls.
	ICEFailed       Reason = "ice_failed"       // the browser stopped answering ICE checks
	ICEDisconnected Reason = "ice_disconnected" // ICE lost the browser mid-call
	ICETimeout      Reason = "ice_timeout"      // the browser never connected after our answer
)

// Outcome is how a conversation ends up: its status.
type Outcome string

// Outcomes; the zero value is OutcomeCompleted.
const (
	OutcomeCompleted   Outcome = ""
	OutcomeFailed      Outcome = Outcome(store.ConvFailed)
	OutcomeTransferred Outcome = Outcome(store.ConvTransferred)
	OutcomeCancelled   Outcome = Outcome(store.ConvCancelled)
	// An outbound call that was never answered.
	OutcomeBusy     Outcome = Outcome(store.ConvBusy)
	OutcomeNoAnswer Outcome = Outcome(store.ConvNoAnswer)
	OutcomeRejected Outcome = Outcome(store.ConvRejected)
)

// DialEnd is how an outbound call that was never answered ended, from its
// INVITE's final SIP status (0: none came, e.g. the trunk did not answer at all)
// and whether we cancelled it ourselves (ring timeout: no_answer).
//
// 486 Busy Here and 600 Busy Everywhere are busy; our CANCEL (487), 408
// Request Timeout and 480 Temporarily Unavailable are no answer (RFC 3261
// §21.4.9, §21.4.18: the callee was reached, or not in time, but did not pick
// up); 603 Decline and the other 4xx/6xx a callee gives are rejected; the
// trunk's own failures — authentication (401/407 left after our credentials),
// 403, 404/484/410/604 (no such number), 5xx, no response — are failed.
func DialEnd(status int, cancelledByUs bool) End {
	e := End{SIPStatus: status}
	switch {
	case cancelledByUs || status == 487 || status == 408 || status == 480:
		e.Reason, e.Outcome = NoAnswer, OutcomeNoAnswer
	case status == 486 || status == 600:
		e.Reason, e.Outcome = CalleeBusy, OutcomeBusy
	case status == 0 || status == 401 || status == 403 || status == 407 || status == 404 || status == 410 ||
		status == 484 || status == 604 || status >= 500 && status < 600:
		e.Reason, e.Outcome = DialFailed, OutcomeFailed
	default:
		e.Reason, e.Outcome = Declined, OutcomeRejected
	}
	return e
}

// End is how a call, or a side of it, ended.
type End struct {
	Reason  Reason
	Outcome Outcome
	// ReferTo and ReferSeconds record a transfer: where to, and how long the
	// gateway carried the call from the transfer's start.
	ReferTo      string
	ReferSeconds int
	// AnsweredAt is when the call was answered (and the far end confirmed it:
	// the ACK, or ICE for a browser); zero when it never was. EndedAt is when the
	// supervisor decided the end; the BYE and the peer's close come after it and
	// are not call time.
	AnsweredAt, EndedAt time.Time
	// SIPStatus is the final status of an outbound call's INVITE when it was
	// not answered.
	SIPStatus int
}

// Failed reports whether the call failed.
func (e End) Failed() bool { return e.Outcome == OutcomeFailed }

// Fail is an End of a failed call.
func Fail(r Reason) End { return End{Reason: r, Outcome: OutcomeFailed} }

// Refusal is an error that refuses a call before it is answered: its SIP status
// (a browser call answers 503 or 480 the same way) and the end reason recorded.
type Refusal struct {
	Code       int
	Phrase     string // SIP reason phrase
	Reason     Reason // recorded on the conversation
	RetryAfter int    // seconds; 0: no Retry-After
	Err        error  // the cause, if any
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return fmt.Sprintf("%d %s (%s): %v", r.Code, r.Phrase, r.Reason, r.Err)
	}
	return fmt.Sprintf("%d %s (%s)", r.Code, r.Phrase, r.Reason)
}

func (r *Refusal) Unwrap() error { return r.Err }

// Refuse makes a Refusal.
func Refuse(code int, phrase string, reason Reason, cause error) *Refusal {
	return &Refusal{Code: code, Phrase: phrase, Reason: reason, Err: cause}
}

// Unavailable is the refusal of a call whose far side cannot be reached (503,
// retry in 5 s).
func Unavailable(reason Reason, cause error) *Refusal {
	return &Refusal{Code: 503, Phrase: "Service Unavailable", Reason: reason, RetryAfter: 5, Err: cause}
}

// Info is what the far side learns about a call when it is set up.
type Info struct {
	ConversationID int64
	Company        *store.Company
	Agent          *store.Agent
	// Config is the agent's config, decoded once.
	Config store.AgentConfig
	Caller string // E.164 when the trunk sent a number, else the From user
	Called string // E.164
	// SIPCallID is the call's SIP Call-ID ("" for a browser call).
	SIPCallID string
	// Record is the call's conversation record: the far side writes the
	// transcript into it.
	Record Record
	Log    *slog.Logger
	// Direction is store.Inbound ("" too) or store.Outbound: an outbound call's
	// Caller is the number we call from, Called the person called.
	Direction string
	// DynamicVariables are the caller's of an outbound call (the API's
	// dynamic_variables), for the agent's prompt and opening line.
	DynamicVariables map[string]any
	// Message, when set, is all the agent says: it speaks this text instead of
	// its opening line, and the caller is not heard (machine_detection
	// leave_message: the voicemail message, its {{variables}} filled). A
	// provider that cannot be told what to say refuses such a session.
	Message string
}

// Variables are the call's dynamic variables as its agent sees them: the
// outbound call's own (the API's dynamic_variables), then ours, which name the
// call and win: caller_number, called_number, conversation_id, agent_name,
// call_direction.
func (i *Info) Variables() map[string]any {
	vars := make(map[string]any, len(i.DynamicVariables)+5)
	for k, v := range i.DynamicVariables {
		vars[k] = v
	}
	direction := i.Direction
	if direction == "" {
		direction = "inbound"
	}
	vars["caller_number"], vars["called_number"] = i.Caller, i.Called
	vars["conversation_id"] = strconv.FormatInt(i.ConversationID, 10)
	if i.Agent != nil {
		vars["agent_name"] = i.Agent.Name
	}
	vars["call_direction"] = direction
	return vars
}

// FillVariables replaces each {{name}} in text with the variable's value, as
// ElevenLabs fills an agent's prompt and first message (its "Dynamic
// variables" guide: double curly braces); a name not among vars stays as
// written. Spaces inside the braces are allowed ({{ name }}).
func FillVariables(text string, vars map[string]any) string {
	if !strings.Contains(text, "{{") {
		return text
	}
	var b strings.Builder
	for {
		i := strings.Index(text, "{{")
		if i < 0 {
			break
		}
		j := strings.Index(text[i+2:], "}}")
		if j < 0 {
			break
		}
		name := strings.TrimSpace(text[i+2 : i+2+j])
		b.WriteString(text[:i])
		if v, ok := vars[name]; ok && name != "" {
			b.WriteString(fmt.Sprint(v))
		} else {
			b.WriteString(text[i : i+2+j+2])
		}
		text = text[i+2+j+2:]
	}
	b.WriteString(text)
	return b.String()
}

// Connector opens the far side of an agent call before it is answered (the bridge
// connects the voice-AI provider). An error refuses the call: with its status
// when it is a *Refusal, else 503.
type Connector interface {
	Connect(ctx context.Context, info *Info) (Peer, error)
}

// Peer is who the caller talks to: the AI agent, the echo line, or after a
// bridged transfer the far leg.
type Peer interface {
	// Format is the audio format the peer consumes and produces.
	Format() media.Format
	// Start is called once the call is answered. From then on caller audio arrives
	// through OnAudio and digits through OnDigit, both on media goroutines: they
	// must not block. The peer plays audio with line.Play.
	Start(line Line) error
	OnAudio(f media.Frame)
	OnDigit(d media.Digit)
	// Done is closed when the peer ends the call (or leaves it, after a
	// transfer: End's reason is then Transferred); End then says why.
	Done() <-chan struct{}
	End() End
	// Close ends the peer's side because the call is over (reason is the call's
	// end reason) and waits for its goroutines.
	Close(reason Reason)
}

// Line is what a peer can do with the call it serves.
type Line interface {
	// Play queues audio in the peer's format; Flush drops everything queued
	// (barge-in) and says how many 20 ms frames it dropped; Drained is closed
	// once everything queued has been played.
	Play(audio []byte) error
	Flush() int
	Drained() <-chan struct{}
	// Queued is how many 20 ms frames are still to be played.
	Queued() int
	// AnsweredAt is when the call was answered (transcript timestamps count from it).
	AnsweredAt() time.Time
	// Hangup ends the call, recording reason.
	Hangup(reason Reason)
	// Transfer hands the caller to target (E.164 or sip: URI) with a SIP REFER,
	// or by bridging an outbound call when bridge is true; it returns when the
	// transfer has succeeded (the call then ends as transferred, or goes on
	// with the destination) or failed (the call goes on with the agent).
	Transfer(ctx context.Context, target string, bridge bool) error
}

// Route is where a dialled number goes: the echo line, or a company's agent.
type Route struct {
	Echo    bool
	Company *store.Company
	Agent   *store.Agent
}

// Start is what is known of a call when it is first recorded.
type Start struct {
	Company   *store.Company
	Agent     *store.Agent
	Caller    string // E.164, or the From user; CallerWebRTC for a browser
	Called    string // E.164; "" for a browser
	SIPCallID string
	StartedAt time.Time
	Metadata  map[string]any // e.g. metadata_.sip: how the call reached us
	// Outbound records an outbound call: queued, Caller our number, Called the
	// person called.
	Outbound bool
}

// Record is one call's conversation record, from the moment the call is taken
// (in progress) to its end. Transcript entries and updates are written in order,
// as they happen, by the record's own goroutine, so a slow store never stalls
// audio; what cannot be written while the store is down is kept and written
// once it is back, before the end. Every write has a deadline.
type Record interface {
	// Conversation is the conversation as recorded, with the updates made since.
	Conversation() *store.Conversation
	// Answered records when the call was answered.
	Answered(ctx context.Context, at time.Time) error
	// Entry adds a transcript entry; at is seconds since the answer.
	Entry(role store.Role, text string, at float64)
	// CorrectAgent replaces the agent's last entry's text with what was heard.
	CorrectAgent(text string, at float64)
	// Served records the provider that serves the call (its slug, the
	// conversation's source) and its id for the conversation, in order with the
	// entries.
	Served(slug, externalID string)
	// Metadata sets what the call path learns in metadata_ (the provider's
	// usage counters, a failover; nested maps merged, other values replaced),
	// in order with the entries.
	Metadata(metadata map[string]any)
	// Transcript reads the transcript written so far.
	Transcript(ctx context.Context) ([]store.TranscriptEntry, error)
	// Ended writes how the call ended, with its media statistics, after
	// every entry; the usage counters and the event go in the same write.
	Ended(e End, stats media.Stats)
	// Analysed adds what the provider knows once the call is over.
	Analysed(ctx context.Context, summary *string, successful *bool, metadata map[string]any) error
}

// Progress is what a Record of an outbound call also records before the answer
// (callstore's records implement it).
type Progress interface {
	// Ringing records that the callee's phone rings (a 180 or 183 came).
	Ringing(ctx context.Context) error
}

// CallerWebRTC is the caller_number of the dashboard's browser test calls.
const CallerWebRTC = "webrtc"
