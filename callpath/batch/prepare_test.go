package batch

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
)

func TestPrepare(t *testing.T) {
	hours := &store.CallingHours{Start: "09:00", End: "17:30"}
	rcpt := func(numbers ...string) []RecipientRequest {
		var rs []RecipientRequest
		for _, n := range numbers {
			rs = append(rs, RecipientRequest{PhoneNumber: n})
		}
		return rs
	}
	many := make([]RecipientRequest, store.MaxBatchRecipients+1)
	for i := range many {
		many[i].PhoneNumber = fmt.Sprintf("+4420%08d", i)
	}
	for _, tc := range []struct {
		name  string
		req   Request
		field string // "" : valid
	}{
		{"no recipients", Request{}, "recipients"},
		{"too many", Request{Recipients: many}, "recipients"},
		{"exactly the most", Request{Recipients: many[:store.MaxBatchRecipients]}, ""},
		{"not e164", Request{Recipients: rcpt("+442071234567", "0207 123 4567")}, "recipients[1].phone_number"},
		{"duplicate after normalising", Request{Recipients: rcpt("+44 20 7123 4567", "+44-20-7123-4567")}, "recipients[1].phone_number"},
		{"bad from", Request{From: "12345", Recipients: rcpt("+442071234567")}, "from"},
		{"cps too high", Request{CallsPerSecond: 500, Recipients: rcpt("+442071234567")}, "calls_per_second"},
		{"negative concurrency", Request{MaxConcurrent: -1, Recipients: rcpt("+442071234567")}, "max_concurrent_calls"},
		{"retry attempts", Request{Retry: &RetryRequest{MaxAttempts: 11}, Recipients: rcpt("+442071234567")}, "retry.max_attempts"},
		{"retry backoff", Request{Retry: &RetryRequest{Backoff: 0.5}, Recipients: rcpt("+442071234567")}, "retry.backoff"},
		{"ring timeout short", Request{RingTimeoutSeconds: 4, Recipients: rcpt("+442071234567")}, "ring_timeout_seconds"},
		{"ring timeout long", Request{RingTimeoutSeconds: 121, Recipients: rcpt("+442071234567")}, "ring_timeout_seconds"},
		{"ring timeout", Request{RingTimeoutSeconds: 120, Recipients: rcpt("+442071234567")}, ""},
		{"machine detection", Request{MachineDetection: "hangup", Recipients: rcpt("+442071234567")}, ""},
		{"machine detection leave_message", Request{MachineDetection: "leave_message", Recipients: rcpt("+442071234567")}, "machine_detection"},
		{"machine detection unknown", Request{MachineDetection: "Detect", Recipients: rcpt("+442071234567")}, "machine_detection"},
		{"hours backwards", Request{CallingHours: &store.CallingHours{Start: "18:00", End: "09:00"}, Recipients: rcpt("+442071234567")}, "calling_hours.end"},
		{"hours not a time", Request{CallingHours: &store.CallingHours{Start: "9am", End: "17:00"}, Recipients: rcpt("+442071234567")}, "calling_hours.start"},
		{"bad day", Request{CallingHours: &store.CallingHours{Start: "09:00", End: "17:00", Days: []string{"monday"}}, Recipients: rcpt("+442071234567")}, "calling_hours.days"},
		{"bad batch zone", Request{TimeZone: "Mars/Olympus", Recipients: rcpt("+442071234567")}, "time_zone"},
		{"bad recipient zone", Request{Recipients: []RecipientRequest{{PhoneNumber: "+12125550100", TimeZone: "EST5EDTX"}}}, "recipients[0].time_zone"},
		// +1 has several zones: with calling hours it needs one.
		{"nanp with hours, no zone", Request{CallingHours: hours, Recipients: rcpt("+442071234567", "+12125550100")}, "recipients[1].time_zone"},
		{"nanp with hours, batch zone", Request{CallingHours: hours, TimeZone: "America/Chicago", Recipients: rcpt("+12125550100")}, ""},
		{"nanp without hours", Request{Recipients: rcpt("+12125550100")}, ""},
		{"variable of a bad type", Request{Recipients: []RecipientRequest{{PhoneNumber: "+442071234567", DynamicVariables: map[string]any{"x": []any{1}}}}}, "recipients[0].dynamic_variables.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Prepare(tc.req, 1, 2)
			var fe *FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrInvalid)):
				t.Fatalf("error %v, want one on %s", err, tc.field)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

func TestPrepareZonesAndDefaults(t *testing.T) {
	b, rs, err := Prepare(Request{Name: " Renewals ", CallingHours: &store.CallingHours{Start: "09:00", End: "17:00"}, TimeZone: "America/New_York",
		Recipients: []RecipientRequest{
			{PhoneNumber: "+44 20 7123 4567", DynamicVariables: map[string]any{"name": "Ann", "due": 12.5}},
			{PhoneNumber: "+4930123456"},
			{PhoneNumber: "+81312345678"},
			{PhoneNumber: "+12125550100"},                                  // the batch's zone
			{PhoneNumber: "+13105550100", TimeZone: "America/Los_Angeles"}, // its own
			{PhoneNumber: "+27211234567"},
		}}, 7, 9)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Europe/London", "Europe/Berlin", "Asia/Tokyo", "America/New_York", "America/Los_Angeles", "Africa/Johannesburg"}
	for i, r := range rs {
		if r.TimeZone != want[i] || r.Index != i {
			t.Errorf("recipient %d (%s): zone %q, want %q", i, r.Number, r.TimeZone, want[i])
		}
	}
	if rs[0].Number != "+442071234567" || rs[0].DynamicVariables["name"] != "Ann" {
		t.Errorf("recipient 0: %+v", rs[0])
	}
	if b.Name != "Renewals" || b.CompanyID != 7 || b.AgentID != 9 || b.CallsPerSecond != DefaultCallsPerSecond || b.MaxConcurrent != DefaultMaxConcurrent ||
		b.Retry.MaxAttempts != DefaultMaxAttempts || time.Duration(b.Retry.Delay) != DefaultRetryDelay || b.Retry.Backoff != DefaultBackoff {
		t.Errorf("batch %+v", b)
	}
	// Every calling code in the table names a zone that loads (or none).
	for code, z := range zoneByCode {
		if z == "" {
			continue
		}
		if _, err := time.LoadLocation(z); err != nil {
			t.Errorf("+%s: %v", code, err)
		}
	}
	if z := ZoneOf("+79161234567"); z != "" {
		t.Errorf("+7 (Russia and Kazakhstan, many zones): %q, want none", z)
	}
}

func TestCallingHours(t *testing.T) {
	w, err := parseHours(store.CallingHours{Start: "09:00", End: "17:00", Days: []string{"Mon", "tue", "wed", "thu", "fri"}})
	if err != nil {
		t.Fatal(err)
	}
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	ny, _ := time.LoadLocation("America/New_York")
	at := func(loc *time.Location, s string) time.Time {
		t.Helper()
		v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		loc  *time.Location
		want time.Time
	}{
		{"inside", at(tokyo, "2026-12-03 10:00"), tokyo, at(tokyo, "2026-12-03 10:00")},
		{"before opening", at(tokyo, "2026-12-03 03:00"), tokyo, at(tokyo, "2026-12-03 09:00")},
		{"at closing", at(tokyo, "2026-12-03 17:00"), tokyo, at(tokyo, "2026-12-04 09:00")},
		{"friday evening to monday", at(tokyo, "2026-12-04 18:00"), tokyo, at(tokyo, "2026-12-07 09:00")},
		{"same instant, other zone", at(tokyo, "2026-12-03 10:00"), ny, at(ny, "2026-12-03 09:00")}, // 20:00 the day before in New York
		// Across the US spring change (8 March 2026): Saturday night to Monday 09:00 EDT.
		{"across DST", at(ny, "2026-03-07 23:00"), ny, at(ny, "2026-03-09 09:00")},
	} {
		if got := w.next(tc.now, tc.loc); !got.Equal(tc.want) {
			t.Errorf("%s: next(%v) = %v, want %v", tc.name, tc.now, got.In(tc.loc), tc.want)
		}
	}
	if _, err := parseHours(store.CallingHours{Start: "08:00", End: "24:00"}); err != nil {
		t.Errorf("24:00 as the end: %v", err)
	}
	if d := RetryDelay(store.RetryPolicy{Delay: store.Duration(time.Minute), Backoff: 2}, 3); d != 4*time.Minute {
		t.Errorf("third retry delay %v, want 4m", d)
	}
	if !strings.Contains(fmt.Sprint(w.days), "false") {
		t.Errorf("weekend allowed: %v", w.days)
	}
}

func TestOutcomeOf(t *testing.T) {
	for _, tc := range []struct {
		status    int
		cancelled bool
		want      Outcome
	}{
		{200, false, Answered}, {486, false, Busy}, {600, false, Busy}, {0, true, NoAnswer}, {487, true, NoAnswer},
		{480, false, NoAnswer}, {408, false, NoAnswer}, {603, false, Rejected}, {403, false, Rejected}, {404, false, Failed},
		{484, false, Failed}, {503, false, Failed}, {407, false, Failed}, {0, false, Failed},
	} {
		if got := OutcomeOf(tc.status, tc.cancelled); got != tc.want {
			t.Errorf("OutcomeOf(%d, %v) = %s, want %s", tc.status, tc.cancelled, got, tc.want)
		}
	}
}
