// Package batch is batch calling's scheduling core: it checks a batch as the
// API receives it (Prepare) and works the stored batches (Worker), placing each
// call through a Dialer — the outbound call path implements it — within the
// batch's calls-per-second and concurrency limits, inside calling hours in each
// recipient's time zone, retrying busy and unanswered recipients with backoff.
//
// A batch is worked by one gateway node at a time: the node holds the batch's
// lease in Redis and renews it; when the node is lost its lease lapses and
// another node takes the batch over. Each recipient moves from state to state
// in one atomic Redis script (store/batches.go), so no recipient is called
// twice: a claimed attempt is the claiming node's alone, and the calls a lost
// node had under way are marked interrupted, never placed again (they may have
// reached the callee). This is at-most-once per attempt, the only promise a
// dialer can keep when a node dies mid-call.
//
// Time zones: a recipient's calling hours are in its time zone, which is, in
// order, the recipient's time_zone, the zone of its number's country calling
// code when every country on that code keeps one clock (zones.go, from tzdata:
// +44 is Europe/London, +49 Europe/Berlin), else the batch's time_zone. Codes
// whose countries keep several clocks — +1 (the US, Canada and the Caribbean),
// +7, +52, +55, +61, +62, +86 (tzdata gives Xinjiang its own), +34 (the
// Canaries), +351 (the Azores) and the others marked "" in zones.go — need a
// time_zone on the recipient or the batch when the batch has calling hours;
// Prepare says which recipient lacks one. (An area-code table for the NANP
// would lift that for +1; it is not here.)
package batch

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones load on hosts without tzdata (slim containers)

	"github.com/cxco/gateway/store"
)

// Request is a batch as the API takes it.
type Request struct {
	Name           string              `json:"name"`
	From           string              `json:"from,omitempty"`
	CallsPerSecond float64             `json:"calls_per_second,omitempty"`
	MaxConcurrent  int                 `json:"max_concurrent_calls,omitempty"`
	CallingHours   *store.CallingHours `json:"calling_hours,omitempty"`
	TimeZone       string              `json:"time_zone,omitempty"`
	Retry          *RetryRequest       `json:"retry,omitempty"`
	// RingTimeoutSeconds is how long each call may ring (5-120, default 30);
	// MachineDetection is each call's answering-machine detection: off
	// (default), detect or hangup, as for POST /api/agents/{id}/calls.
	RingTimeoutSeconds int                `json:"ring_timeout_seconds,omitempty"`
	MachineDetection   string             `json:"machine_detection,omitempty"`
	HideCallerID       bool               `json:"hide_caller_id,omitempty"` // an anonymous From and Privacy: id
	Recipients         []RecipientRequest `json:"recipients"`
}

// RetryRequest is the retry policy as the API takes it.
type RetryRequest struct {
	MaxAttempts  int     `json:"max_attempts"`
	DelaySeconds float64 `json:"delay_seconds"`
	Backoff      float64 `json:"backoff"`
}

// RecipientRequest is one recipient as the API takes it.
type RecipientRequest struct {
	PhoneNumber      string         `json:"phone_number"`
	DynamicVariables map[string]any `json:"dynamic_variables,omitempty"`
	TimeZone         string         `json:"time_zone,omitempty"`
}

// Limits and defaults of a batch.
const (
	DefaultRingTimeout    = 30 // seconds
	MinRingTimeout        = 5
	MaxRingTimeout        = 120
	DefaultCallsPerSecond = 1.0
	MaxCallsPerSecond     = 100.0
	DefaultMaxConcurrent  = 10
	MaxConcurrent         = 1000
	DefaultMaxAttempts    = 3
	MaxAttempts           = 10
	DefaultRetryDelay     = 5 * time.Minute
	DefaultBackoff        = 2.0
)

// ErrInvalid is the root of every validation error; FieldError names the field.
var ErrInvalid = errors.New("invalid batch")

// FieldError is a field that fails validation, named as the API names it.
type FieldError struct{ Field, Detail string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, a ...any) error {
	return &FieldError{Field: field, Detail: fmt.Sprintf(format, a...)}
}

// Prepare checks a request and turns it into the batch and recipients to store
// for a company's agent: defaults filled in, numbers in E.164, each
// recipient's time zone resolved.
func Prepare(req Request, companyID, agentID int64) (store.Batch, []store.BatchRecipient, error) {
	b := store.Batch{CompanyID: companyID, AgentID: agentID, Name: strings.TrimSpace(req.Name), From: req.From,
		CallsPerSecond: req.CallsPerSecond, MaxConcurrent: req.MaxConcurrent, CallingHours: req.CallingHours, TimeZone: req.TimeZone,
		HideCallerID: req.HideCallerID}
	switch n := len(req.Recipients); {
	case n == 0:
		return b, nil, invalid("recipients", "at least one recipient is required")
	case n > store.MaxBatchRecipients:
		return b, nil, invalid("recipients", "%d recipients; a batch takes at most %d", n, store.MaxBatchRecipients)
	}
	if len(b.Name) > 200 {
		return b, nil, invalid("name", "at most 200 characters")
	}
	if b.From != "" {
		n, ok := store.NormalizeE164(b.From)
		if !ok {
			return b, nil, invalid("from", "%q is not an E.164 number (+ and 7 to 15 digits)", b.From)
		}
		b.From = n
	}
	switch {
	case b.CallsPerSecond == 0:
		b.CallsPerSecond = DefaultCallsPerSecond
	case b.CallsPerSecond < 0 || b.CallsPerSecond > MaxCallsPerSecond:
		return b, nil, invalid("calls_per_second", "must be above 0 and at most %v", MaxCallsPerSecond)
	}
	switch {
	case b.MaxConcurrent == 0:
		b.MaxConcurrent = DefaultMaxConcurrent
	case b.MaxConcurrent < 0 || b.MaxConcurrent > MaxConcurrent:
		return b, nil, invalid("max_concurrent_calls", "must be 1 to %d", MaxConcurrent)
	}
	switch b.RingTimeout = req.RingTimeoutSeconds; {
	case b.RingTimeout == 0:
		b.RingTimeout = DefaultRingTimeout
	case b.RingTimeout < MinRingTimeout || b.RingTimeout > MaxRingTimeout:
		return b, nil, invalid("ring_timeout_seconds", "must be between %d and %d (got %d)", MinRingTimeout, MaxRingTimeout, b.RingTimeout)
	}
	// The modes are callpath's (AMDOff, AMDDetect, AMDHangup). leave_message
	// needs the agent told what to say after the beep: not for batches yet.
	switch b.MachineDetection = req.MachineDetection; b.MachineDetection {
	case "", "off":
		b.MachineDetection = ""
	case "detect", "hangup":
	default:
		return b, nil, invalid("machine_detection", "must be off, detect or hangup (got %q)", req.MachineDetection)
	}
	b.Retry = store.RetryPolicy{MaxAttempts: DefaultMaxAttempts, Delay: store.Duration(DefaultRetryDelay), Backoff: DefaultBackoff}
	if r := req.Retry; r != nil {
		if r.MaxAttempts != 0 {
			b.Retry.MaxAttempts = r.MaxAttempts
		}
		if r.DelaySeconds != 0 {
			b.Retry.Delay = store.Duration(r.DelaySeconds * float64(time.Second))
		}
		if r.Backoff != 0 {
			b.Retry.Backoff = r.Backoff
		}
		switch {
		case b.Retry.MaxAttempts < 1 || b.Retry.MaxAttempts > MaxAttempts:
			return b, nil, invalid("retry.max_attempts", "must be 1 to %d (the first call included)", MaxAttempts)
		case r.DelaySeconds < 0 || r.DelaySeconds > 86400:
			return b, nil, invalid("retry.delay_seconds", "must be 0 to 86400")
		case b.Retry.Backoff < 1 || b.Retry.Backoff > 10:
			return b, nil, invalid("retry.backoff", "must be 1 to 10")
		}
	}
	var hours *window
	if b.CallingHours != nil {
		h, err := parseHours(*b.CallingHours)
		if err != nil {
			return b, nil, err
		}
		hours = &h
	}
	if b.TimeZone != "" {
		if _, err := time.LoadLocation(b.TimeZone); err != nil || b.TimeZone == "Local" {
			return b, nil, invalid("time_zone", "%q is not an IANA time zone (like Europe/Paris)", b.TimeZone)
		}
	}
	rs := make([]store.BatchRecipient, len(req.Recipients))
	seen := make(map[string]int, len(req.Recipients))
	for i, in := range req.Recipients {
		field := "recipients[" + strconv.Itoa(i) + "]"
		n, ok := store.NormalizeE164(in.PhoneNumber)
		if !ok {
			return b, nil, invalid(field+".phone_number", "%q is not an E.164 number (+ and 7 to 15 digits)", in.PhoneNumber)
		}
		if j, dup := seen[n]; dup {
			return b, nil, invalid(field+".phone_number", "%s is also recipient %d; a batch calls each number once", n, j)
		}
		seen[n] = i
		for k, v := range in.DynamicVariables {
			switch v.(type) {
			case string, float64, bool, int, int64:
			default:
				return b, nil, invalid(field+".dynamic_variables."+k, "must be a string, number or boolean")
			}
		}
		zone := in.TimeZone
		if zone != "" {
			if _, err := time.LoadLocation(zone); err != nil || zone == "Local" {
				return b, nil, invalid(field+".time_zone", "%q is not an IANA time zone (like Europe/Paris)", zone)
			}
		}
		if zone == "" {
			zone = ZoneOf(n)
		}
		if zone == "" {
			zone = b.TimeZone
		}
		if zone == "" && hours != nil {
			return b, nil, invalid(field+".time_zone", "%s's country code has several time zones: give the recipient's time_zone, or the batch's", n)
		}
		rs[i] = store.BatchRecipient{Index: i, Number: n, DynamicVariables: in.DynamicVariables, TimeZone: zone}
	}
	return b, rs, nil
}

// ZoneOf is the time zone of an E.164 number's country calling code when its
// countries keep one clock, else "".
func ZoneOf(number string) string {
	d := strings.TrimPrefix(number, "+")
	for n := 1; n <= 3 && n <= len(d); n++ { // calling codes are prefix-free
		if z, ok := zoneByCode[d[:n]]; ok {
			return z
		}
	}
	return ""
}

// window is calling hours: minutes of the day [start, end) on days.
type window struct {
	start, end int
	days       [7]bool // by time.Weekday
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func parseHours(h store.CallingHours) (window, error) {
	var w window
	var err error
	if w.start, err = clock(h.Start); err != nil {
		return w, invalid("calling_hours.start", "%v", err)
	}
	if w.end, err = clock(h.End); err != nil {
		return w, invalid("calling_hours.end", "%v", err)
	}
	if w.end <= w.start {
		return w, invalid("calling_hours.end", "%s is not after the start %s (hours that cross midnight are two batches)", h.End, h.Start)
	}
	if len(h.Days) == 0 {
		w.days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, d := range h.Days {
		i := slices.Index(dayNames, strings.ToLower(d))
		if i < 0 {
			return w, invalid("calling_hours.days", "%q is not one of mon, tue, wed, thu, fri, sat, sun", d)
		}
		w.days[i] = true
	}
	return w, nil
}

func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		if s == "24:00" {
			return 24 * 60, nil
		}
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// next is t when a call may start then, else the next moment one may, in loc.
func (w window) next(t time.Time, loc *time.Location) time.Time {
	lt := t.In(loc)
	for d := 0; d <= 7; d++ {
		day := time.Date(lt.Year(), lt.Month(), lt.Day()+d, 0, 0, 0, 0, loc)
		if !w.days[day.Weekday()] {
			continue
		}
		start := time.Date(day.Year(), day.Month(), day.Day(), w.start/60, w.start%60, 0, 0, loc)
		end := time.Date(day.Year(), day.Month(), day.Day(), w.end/60, w.end%60, 0, 0, loc)
		if t.Before(start) {
			return start
		}
		if t.Before(end) {
			return t
		}
	}
	return t // no day allowed: cannot happen after parseHours
}
