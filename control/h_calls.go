package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cxco/gateway/store"
)

// Outbound calls: an agent calls a number (POST /api/agents/{agent_id}/calls),
// and an outbound call is hung up, ringing or answered (DELETE
// /api/conversations/{conversation_id}).

// OutboundCaller places outbound calls (sip.Server through cmd/cxco). The call
// is recorded queued before PlaceCall returns and goes on by itself; Done is
// called once it is over.
type OutboundCaller interface {
	PlaceCall(ctx context.Context, r OutboundRequest) (*store.Conversation, error)
}

// OutboundRequest is one call to place.
type OutboundRequest struct {
	Company          *store.Company
	Agent            *store.Agent
	From, To         string // E.164
	DynamicVariables map[string]any
	RingTimeout      time.Duration
	// MachineDetection is off, detect, hangup or leave_message;
	// VoicemailMessage is what leave_message says.
	MachineDetection string
	HideCallerID     bool // an anonymous From and Privacy: id
	VoicemailMessage string
	Done             func()
}

// outboundSlotTTL is how long a call's hold on its company's outbound limits
// lasts unless renewed (it is renewed every third of it while the call lasts).
const outboundSlotTTL = 30 * time.Second

func outboundLimitsSchema() js {
	return object([]string{"max_concurrent_calls", "calls_per_second"}, js{
		"max_concurrent_calls": js{"type": "integer", "minimum": 0, "maximum": 10000, "description": "outbound calls at once, across every node (0: no limit)"},
		"calls_per_second":     js{"type": "number", "minimum": 0, "maximum": 1000, "description": "new outbound calls a second, spaced evenly (0: no limit)"}})
}

func outboundSchemas() js {
	return js{
		"OutboundCallCreate": strict(object([]string{"to"}, js{
			"to":   str("the number to call, E.164 (+27211234567)"),
			"from": str("one of the company's numbers (E.164) to call from; default the agent's number"),
			"dynamic_variables": js{"type": "object", "additionalProperties": js{"type": []string{"string", "number", "boolean"}},
				"description": "variables for the agent's prompt and opening line (at most 50; strings up to 1,000 characters)"},
			"ring_timeout_seconds": js{"type": "integer", "minimum": 5, "maximum": 120, "default": 30,
				"description": "how long the phone may ring before the call is cancelled (status no_answer)"},
			"hide_caller_id": js{"type": "boolean", "default": false,
				"description": "withhold the caller ID (RFC 3323/3325): From is \"Anonymous\" <sip:anonymous@anonymous.invalid> with Privacy: id; " +
					"the from number goes only in P-Asserted-Identity, for the trunk's network, which removes it before the callee"},
			"machine_detection": js{"type": "string", "enum": []string{"off", "detect", "hangup", "leave_message"}, "default": "off",
				"description": "answering-machine detection from the audio (our own: speech cadence and the beep): detect holds the agent's opening line until the verdict " +
					"(human, machine or unknown, in metadata_.machine_detection); hangup also ends the call on a machine (end_reason machine_detected); " +
					"leave_message has the agent say voicemail_message to a machine once it is ready to record — after its beep, else after 2 s of silence " +
					"after its greeting, else 20 s in — and hang up once it has played (end_reason voicemail_left; metadata_.machine_detection.voicemail " +
					"{left, cue, cue_at_ms, started_at_ms, played_ms}); a person or an unknown verdict gets the agent as with detect. " +
					"leave_message needs an agent on elevenlabs or openai (a Media Streams bot cannot be told what to say)"},
			"voicemail_message": js{"type": "string", "minLength": 1, "maxLength": 1000,
				"description": "with leave_message (and only then; required): what the agent says to a voicemail box, word for word; " +
					"{{name}} is filled from dynamic_variables and the call's own (caller_number, called_number, agent_name, ...)"},
		})),
	}
}

func (s *Server) outboundRoutes() []*route {
	return []*route{
		{method: "POST", path: "/api/agents/{agent_id}/calls", auth: authUser, role: roleMember, tag: "Agents",
			summary: "Place an outbound call: the agent calls a number through the trunk. The conversation is returned queued, " +
				"then becomes ringing, in_progress once answered (answered_at is when the 200 OK arrived), and ends completed, " +
				"or busy, no_answer, rejected or failed (with sip_status) when never answered",
			resource: "agent", body: "OutboundCallCreate", resp: "Conversation", status: http.StatusCreated,
			errors: []int{404, 409, 422}, h: s.placeCall},
		{method: "DELETE", path: "/api/conversations/{conversation_id}", auth: authUser, role: roleMember, tag: "Conversations",
			summary: "Hang up an outbound call: ringing (CANCEL; it ends cancelled) or answered (BYE). " +
				"It returns once the call has ended, or 202 when its node has not ended it within 10 s",
			resource: "conversation", status: http.StatusNoContent, errors: []int{404, 409, 422}, h: s.hangupConversation},
	}
}

func readOutboundLimits(f *form) (*store.OutboundLimits, error) {
	m, err := f.object("outbound_limits")
	if err != nil || m == nil {
		return nil, err
	}
	lim := store.OutboundLimits{}
	for k, v := range m {
		n, ok := v.(float64)
		switch {
		case k != "max_concurrent_calls" && k != "calls_per_second":
			return nil, invalid("outbound_limits.%s: unknown field (max_concurrent_calls, calls_per_second)", k)
		case !ok || n < 0:
			return nil, invalid("outbound_limits.%s: must be a number, 0 or more", k)
		case k == "max_concurrent_calls" && (n != math.Trunc(n) || n > 10000):
			return nil, invalid("outbound_limits.max_concurrent_calls: must be a whole number from 0 (no limit) to 10000")
		case k == "calls_per_second" && n > 1000:
			return nil, invalid("outbound_limits.calls_per_second: must be from 0 (no limit) to 1000")
		case k == "max_concurrent_calls":
			lim.MaxConcurrent = int(n)
		default:
			lim.CallsPerSecond = n
		}
	}
	if _, ok := m["max_concurrent_calls"]; !ok {
		return nil, invalid("outbound_limits.max_concurrent_calls: field required")
	}
	if _, ok := m["calls_per_second"]; !ok {
		return nil, invalid("outbound_limits.calls_per_second: field required")
	}
	return &lim, nil
}

func (s *Server) placeCall(c *call) (result, error) {
	a, err := c.agent()
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "to", "from", "dynamic_variables", "ring_timeout_seconds", "machine_detection", "hide_caller_id", "voicemail_message")
	if err != nil {
		return result{}, err
	}
	toRaw, err := f.str("to", true, 1, 32)
	if err != nil {
		return result{}, err
	}
	to, okTo := store.NormalizeE164(*toRaw)
	if !okTo {
		return result{}, invalid("to: %q is not an E.164 number (like +27211234567)", *toRaw)
	}
	fromRaw, err := f.str("from", false, 1, 32)
	if err != nil {
		return result{}, err
	}
	vars, err := readDynamicVariables(f)
	if err != nil {
		return result{}, err
	}
	ring := 30 * time.Second
	if n, err := f.integer("ring_timeout_seconds", false); err != nil {
		return result{}, err
	} else if n != nil {
		if *n < 5 || *n > 120 {
			return result{}, invalid("ring_timeout_seconds: must be between 5 and 120 (got %d)", *n)
		}
		ring = time.Duration(*n) * time.Second
	}
	md := "off"
	if v, err := f.str("machine_detection", false, 1, 20); err != nil {
		return result{}, err
	} else if v != nil {
		if err := oneOf("machine_detection", *v, "off", "detect", "hangup", "leave_message"); err != nil {
			return result{}, err
		}
		md = *v
	}
	hide, err := f.boolean("hide_caller_id")
	if err != nil {
		return result{}, err
	}
	vmText, err := f.str("voicemail_message", false, 1, 1000)
	if err != nil {
		return result{}, err
	}
	var voicemail string
	switch {
	case md == "leave_message" && (vmText == nil || strings.TrimSpace(*vmText) == ""):
		return result{}, invalid("voicemail_message: field required with machine_detection leave_message (what the agent says to a voicemail box)")
	case md != "leave_message" && vmText != nil:
		return result{}, invalid("voicemail_message: only with machine_detection leave_message (got %s)", md)
	case vmText != nil:
		voicemail = strings.TrimSpace(*vmText)
	}
	if md == "leave_message" && store.ProviderOf(a) == store.ProviderMediaStream {
		return result{}, invalid("machine_detection: leave_message needs an agent on elevenlabs or openai: a Media Streams bot cannot be told what to say")
	}
	// From: one of the company's numbers, by default the agent's.
	nums, err := s.st.CompanyNumbers(c.ctx, c.companyID())
	if err != nil {
		return result{}, err
	}
	var from string
	if fromRaw != nil {
		e, okFrom := store.NormalizeE164(*fromRaw)
		if !okFrom {
			return result{}, invalid("from: %q is not an E.164 number", *fromRaw)
		}
		for _, pn := range nums {
			if pn.Number == e {
				from = e
			}
		}
		if from == "" {
			return result{}, invalid("from: %s is not one of the company's numbers (GET /api/phone-numbers)", e)
		}
	} else {
		for _, pn := range nums {
			if a.PhoneNumberID != nil && pn.ID == *a.PhoneNumberID {
				from = pn.Number
			}
		}
		if from == "" {
			return result{}, invalid("from: the agent has no number; give one of the company's numbers to call from")
		}
	}
	if a.Status != store.AgentActive {
		return result{}, errf(http.StatusConflict, typeConflict, "agent %d is %s: publish or resume it before it places calls", a.ID, a.Status)
	}
	if s.opts.Outbound == nil {
		return result{}, errf(http.StatusServiceUnavailable, typeUnavailable, "outbound calls are not available on this gateway")
	}
	// The company's outbound limits, shared by every node: a slot held while the call lasts.
	slotID := "api-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	slot, err := s.st.AcquireOutbound(c.ctx, c.companyID(), slotID, c.company.OutboundLimits(), outboundSlotTTL)
	var le *store.OutboundLimitError
	if errors.As(err, &le) {
		retry := max(1, int(math.Ceil(le.RetryAfter.Seconds())))
		c.w.Header().Set("Retry-After", strconv.Itoa(retry))
		lim := c.company.OutboundLimits()
		if le.Limit == "calls_per_second" {
			return result{}, errf(http.StatusTooManyRequests, typeRateLimited,
				"the company may start %g outbound calls a second; retry in %d s", lim.CallsPerSecond, retry)
		}
		return result{}, errf(http.StatusTooManyRequests, typeRateLimited,
			"the company has %d outbound calls under way, its limit; retry when one ends", lim.MaxConcurrent)
	}
	if err != nil {
		return result{}, err
	}
	stopRenew := make(chan struct{})
	release := func() {
		close(stopRenew)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = slot.Release(ctx)
	}
	go func() { // the slot is renewed while the call lasts
		t := time.NewTicker(outboundSlotTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stopRenew:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = slot.Renew(ctx)
				cancel()
			}
		}
	}()
	conv, err := s.opts.Outbound.PlaceCall(c.ctx, OutboundRequest{Company: c.company, Agent: a, From: from, To: to,
		DynamicVariables: vars, RingTimeout: ring, MachineDetection: md, HideCallerID: hide != nil && *hide,
		VoicemailMessage: voicemail, Done: release})
	if err != nil {
		release()
		if errors.Is(err, store.ErrUnavailable) {
			return result{}, err
		}
		return result{}, errf(http.StatusServiceUnavailable, typeUnavailable, "the call cannot be placed now: %s", err.Error())
	}
	return created(conv)
}

// readDynamicVariables reads dynamic_variables: string, number or boolean values.
func readDynamicVariables(f *form) (map[string]any, error) {
	m, err := f.object("dynamic_variables")
	if err != nil || m == nil {
		return nil, err
	}
	if len(m) > 50 {
		return nil, invalid("dynamic_variables: at most 50 (got %d)", len(m))
	}
	for k, v := range m {
		if k == "" || len(k) > 64 {
			return nil, invalid("dynamic_variables: names are 1 to 64 characters (got %q)", k)
		}
		switch x := v.(type) {
		case string:
			if len(x) > 1000 {
				return nil, invalid("dynamic_variables.%s: at most 1000 characters", k)
			}
		case float64, bool:
		default:
			return nil, invalid("dynamic_variables.%s: must be a string, number or boolean", k)
		}
	}
	return m, nil
}

// hangupConversation hangs up an outbound call, ringing or answered: the node
// that carries it hears the request (store.RequestHangup) and cancels or ends
// it; the answer comes once the conversation has ended.
func (s *Server) hangupConversation(c *call) (result, error) {
	id, err := c.pathID("conversation_id")
	if err != nil {
		return result{}, err
	}
	conv, err := s.st.GetConversation(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	if conv.Direction != store.Outbound {
		return result{}, errf(http.StatusConflict, typeConflict,
			"conversation %d is an inbound call: hang it up with DELETE /api/calls/live/%d", id, id)
	}
	if !store.ConvOpen(conv.Status) {
		return result{}, errf(http.StatusConflict, typeConflict, "conversation %d has ended already (%s)", id, conv.Status)
	}
	if err := s.st.RequestHangup(c.ctx, id); err != nil {
		return result{}, err
	}
	// Watch the record until it ends (the call's node writes it).
	deadline := time.NewTimer(hangupWait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-deadline.C:
			return result{http.StatusAccepted, map[string]any{"conversation_id": id,
				"detail": fmt.Sprintf("the hang-up was requested; the call had not ended after %s", hangupWait)}}, nil
		case <-c.ctx.Done():
			return result{}, c.ctx.Err()
		case <-tick.C:
		}
		cv, err := s.st.GetConversation(c.ctx, c.companyID(), id)
		if err == nil && !store.ConvOpen(cv.Status) {
			return noContent()
		}
	}
}
