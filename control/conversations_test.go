package control_test

import (
	"context"
	"math"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/cxco/gateway/store"
)

// convSpec is a conversation as a call (a later issue) would record it through the store.
type convSpec struct {
	agent      int64
	channel    string // voice (default) or whatsapp
	caller     string
	started    time.Time
	answered   bool
	dur        int    // seconds from answer to end
	status     string // final status; "" leaves it in progress
	refer      int    // SIP REFER seconds
	referTo    string
	success    *bool
	summary    string
	transcript []store.TranscriptEntry
	metadata   map[string]any
}

func bptr(b bool) *bool { return &b }

// makeConv records a conversation the way the bridge will: created at the INVITE,
// transcript appended as it happens, answered, finished, then analysed.
func (e *env) makeConv(cid int64, s convSpec) *store.Conversation {
	e.t.Helper()
	ctx := context.Background()
	if s.channel == "" {
		s.channel = "voice"
	}
	c := store.Conversation{AgentID: s.agent, CompanyID: cid, Channel: s.channel, Direction: "inbound", StartedAt: s.started}
	if s.caller != "" {
		c.CallerNumber = &s.caller
	}
	cv, err := e.st.CreateConversation(ctx, c)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(s.transcript) > 0 {
		if err := e.st.AppendTranscript(ctx, cid, cv.ID, s.transcript...); err != nil {
			e.t.Fatal(err)
		}
	}
	answeredAt := s.started.UTC().Truncate(time.Second).Add(2 * time.Second) // as the SIP side records it
	if s.answered {
		if _, err := e.st.UpdateConversation(ctx, cid, cv.ID, func(c *store.Conversation) error {
			c.AnsweredAt = &answeredAt
			ext := "el_conv_" + p("%d", c.ID)
			c.ExternalConversationID = &ext
			return nil
		}); err != nil {
			e.t.Fatal(err)
		}
	}
	if s.status != "" {
		end := answeredAt.Add(time.Duration(s.dur) * time.Second)
		if !s.answered {
			end = s.started.Add(5 * time.Second)
		}
		if _, err := e.st.FinishConversation(ctx, cid, cv.ID, store.Final{Status: s.status, EndedAt: end, EndReason: "test",
			SIPReferSeconds: s.refer, ReferTo: s.referTo, Metadata: s.metadata}); err != nil {
			e.t.Fatal(err)
		}
	}
	if s.success != nil || s.summary != "" {
		var sum *string
		if s.summary != "" {
			sum = &s.summary
		}
		if _, err := e.st.SetAnalysis(ctx, cid, cv.ID, sum, s.success, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	out, err := e.st.GetConversation(ctx, cid, cv.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func day(d string, hms string) time.Time {
	t, err := time.Parse(time.RFC3339, d+"T"+hms+"Z")
	if err != nil {
		panic(err)
	}
	return t
}

var sampleTranscript = []store.TranscriptEntry{
	{Role: "agent", Message: "Hi there! Thanks for calling Acme Corp. How can I help you today?", Timestamp: 0},
	{Role: "user", Message: "Hi, I was wondering about your pricing for the Pro plan.", Timestamp: 3.2},
	{Role: "agent", Message: "Great question! Our Pro plan starts at R499 per month and includes...", Timestamp: 5.8},
}

// TestConversations: the list with agent/channel filters and paging, the per-agent
// list, and the detail with transcript and metadata_.
func TestConversations(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Talkers")
	a, b := e.newAgent(tn, "Agent A"), e.newAgent(tn, "Agent B")
	var all, ofA, ofB, voice, wa, voiceOfA []int64
	for i := 0; i < 12; i++ {
		ag, ch := a, "voice"
		if i%3 == 0 {
			ag = b
		}
		if i%4 == 0 {
			ch = "whatsapp"
		}
		cv := e.makeConv(tn.id, convSpec{agent: ag, channel: ch, caller: p("+2782%07d", i), started: day("2026-02-01", "10:00:00").Add(time.Duration(i) * time.Minute),
			answered: true, dur: 30 + i, status: "completed"})
		all = append([]int64{cv.ID}, all...)
		if ag == a {
			ofA = append([]int64{cv.ID}, ofA...)
			if ch == "voice" {
				voiceOfA = append([]int64{cv.ID}, voiceOfA...)
			}
		} else {
			ofB = append([]int64{cv.ID}, ofB...)
		}
		if ch == "voice" {
			voice = append([]int64{cv.ID}, voice...)
		} else {
			wa = append([]int64{cv.ID}, wa...)
		}
	}
	detailed := e.makeConv(tn.id, convSpec{agent: a, caller: "+27821234567", started: day("2026-03-12", "16:05:00"), answered: true, dur: 212,
		status: "completed", success: bptr(true), summary: "Customer enquired about Pro plan pricing.", transcript: sampleTranscript,
		metadata: map[string]any{"llm_tokens": 1240}})
	all = append([]int64{detailed.ID}, all...)
	ofA = append([]int64{detailed.ID}, ofA...)
	voice = append([]int64{detailed.ID}, voice...)
	voiceOfA = append([]int64{detailed.ID}, voiceOfA...)

	for _, c := range []struct {
		path string
		want []int64
	}{
		{"/api/conversations/", all},
		{p("/api/conversations/?agent_id=%d", a), ofA},
		{p("/api/conversations?agent_id=%d", b), ofB},
		{"/api/conversations/?channel=voice", voice},
		{"/api/conversations/?channel=whatsapp", wa},
		{p("/api/conversations/?agent_id=%d&channel=voice", a), voiceOfA},
		{p("/api/agents/%d/conversations", a), ofA},
		{p("/api/agents/%d/conversations/?channel=voice", a), voiceOfA},
		{p("/api/agents/%d/conversations?channel=whatsapp", b), intersect(ofB, wa)},
		{"/api/conversations/?agent_id=424242", nil},
	} {
		for _, limit := range []int{1, 5, 30} {
			if got := e.walk(c.path, tn.userKey, limit); !slices.Equal(got, c.want) {
				t.Errorf("%s (limit %d): %v, want %v", c.path, limit, got, c.want)
			}
		}
	}
	items, more, _ := pageOf(t, e.must(200, "GET", "/api/conversations/", tn.userKey, nil))
	if len(items) != 13 || more {
		t.Fatalf("default page: %d items, has_more %v", len(items), more)
	}
	for _, it := range items {
		it := it.(map[string]any)
		if _, has := it["transcript"]; has {
			t.Fatalf("a list item has the transcript: %v", it)
		}
		if _, has := it["metadata_"]; has {
			t.Fatalf("a list item has metadata_: %v", it)
		}
	}
	for _, c := range []struct{ name, path, field string }{
		{"agent_id not an id", "/api/conversations/?agent_id=abc", "agent_id"},
		{"agent_id zero", "/api/conversations/?agent_id=0", "agent_id"},
		{"channel unknown", "/api/conversations/?channel=sms", "channel"},
		{"limit 101", "/api/conversations/?limit=101", "limit"},
		{"bad cursor", "/api/conversations/?cursor=xyz", "cursor"},
		{"agent list channel unknown", p("/api/agents/%d/conversations?channel=fax", a), "channel"},
		{"agent list limit 0", p("/api/agents/%d/conversations?limit=0", a), "limit"},
	} {
		isError(t, c.name, e.do("GET", c.path, tn.userKey, nil), 422, "validation_error", c.field)
	}
	e.fails(404, "not_found", "agent", "GET", "/api/agents/424242/conversations", tn.userKey, nil)

	// Detail.
	d := e.must(200, "GET", p("/api/conversations/%d", detailed.ID), tn.userKey, nil).json(t)
	want := map[string]any{"id": float64(detailed.ID), "agent_id": float64(a), "company_id": float64(tn.id), "channel": "voice",
		"caller_number": "+27821234567", "direction": "inbound", "started_at": "2026-03-12T16:05:00Z", "ended_at": "2026-03-12T16:08:34Z",
		"duration_seconds": 212.0, "message_count": 3.0, "status": "completed", "call_successful": true,
		"transcript_summary": "Customer enquired about Pro plan pricing.", "source": "elevenlabs"}
	for k, w := range want {
		if d[k] != w {
			t.Errorf("detail %s = %v, want %v", k, d[k], w)
		}
	}
	for _, k := range []string{"external_conversation_id", "created_at"} {
		if d[k] == nil {
			t.Errorf("detail has no %s", k)
		}
	}
	tr, _ := d["transcript"].([]any)
	if len(tr) != 3 {
		t.Fatalf("transcript: %v", d["transcript"])
	}
	for i, en := range tr {
		en := en.(map[string]any)
		if en["role"] != string(sampleTranscript[i].Role) || en["message"] != sampleTranscript[i].Message || en["timestamp"] != sampleTranscript[i].Timestamp {
			t.Errorf("transcript[%d] = %v", i, en)
		}
	}
	if md, _ := d["metadata_"].(map[string]any); md["llm_tokens"] != 1240.0 {
		t.Fatalf("metadata_: %v", d["metadata_"])
	}
	// A conversation without transcript or metadata still has both fields.
	bare := e.must(200, "GET", p("/api/conversations/%d", all[len(all)-1]), tn.userKey, nil).json(t)
	if tr, ok := bare["transcript"].([]any); !ok || len(tr) != 0 {
		t.Fatalf("empty transcript: %v", bare["transcript"])
	}
	if md, ok := bare["metadata_"].(map[string]any); !ok || len(md) != 0 {
		t.Fatalf("empty metadata_: %v", bare["metadata_"])
	}
	// An in-progress conversation shows its transcript so far.
	// (Its start is given with nanoseconds in another time zone: the API shows RFC 3339 UTC seconds.)
	johannesburg := time.FixedZone("SAST", 2*3600)
	started := time.Date(2026, 3, 12, 18, 5, 0, 123456789, johannesburg)
	live := e.makeConv(tn.id, convSpec{agent: a, caller: "+27829999999", started: started, answered: true, transcript: sampleTranscript[:2]})
	l := e.must(200, "GET", p("/api/conversations/%d", live.ID), tn.userKey, nil).json(t)
	if l["status"] != "in_progress" || l["ended_at"] != nil || len(l["transcript"].([]any)) != 2 {
		t.Fatalf("live conversation: %v", l)
	}
	if l["started_at"] != "2026-03-12T16:05:00Z" {
		t.Fatalf("started_at %v, want 2026-03-12T16:05:00Z", l["started_at"])
	}
	stamp := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`)
	for _, k := range []string{"started_at", "answered_at", "created_at"} {
		if s, _ := l[k].(string); !stamp.MatchString(s) {
			t.Errorf("%s = %v, not an RFC 3339 UTC timestamp in seconds", k, l[k])
		}
	}
	e.fails(404, "not_found", "conversation", "GET", "/api/conversations/424242", tn.userKey, nil)
	e.fails(422, "validation_error", "conversation_id", "GET", "/api/conversations/latest", tn.userKey, nil)
	e.fails(403, "permission_denied", "user key", "GET", "/api/conversations/", tn.compKey, nil)
}

func intersect(a, b []int64) []int64 {
	var out []int64
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// usageAgg is usage computed from conversation records as the API returns them.
type usageAgg struct{ convs, secs, refer, analysed, ok, waConvs, waMsgs int64 }

func aggregate(convs []map[string]any, keep func(c map[string]any) bool) usageAgg {
	var u usageAgg
	for _, c := range convs {
		// A conversation counts once it has ended, if it was answered.
		if !keep(c) || c["status"] == "in_progress" || c["duration_seconds"] == nil {
			continue
		}
		if c["channel"] == "whatsapp" {
			u.waConvs++
			u.waMsgs += num(c["message_count"])
			continue
		}
		u.convs++
		// Voice minutes are time with the AI; the transfer's part is SIP REFER minutes.
		u.secs += num(c["duration_seconds"]) - num(c["sip_refer_seconds"])
		u.refer += num(c["sip_refer_seconds"])
		if ok, has := c["call_successful"].(bool); has {
			u.analysed++
			if ok {
				u.ok++
			}
		}
	}
	return u
}

func roundTo(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// checkVoice compares a usage body's voice (and whatsapp, when present) object with u.
func checkVoice(t *testing.T, what string, body map[string]any, u usageAgg) {
	t.Helper()
	v, _ := body["voice"].(map[string]any)
	want := map[string]any{"total_conversations": float64(u.convs), "total_minutes": roundTo(float64(u.secs)/60, 2),
		"total_sip_refer_minutes": roundTo(float64(u.refer)/60, 2), "average_duration_seconds": 0.0, "success_rate": nil}
	if u.convs > 0 {
		want["average_duration_seconds"] = roundTo(float64(u.secs+u.refer)/float64(u.convs), 1)
	}
	if u.analysed > 0 {
		want["success_rate"] = roundTo(float64(u.ok)/float64(u.analysed), 3)
	}
	for k, w := range want {
		if got, has := v[k]; !has || got != w {
			t.Errorf("%s: voice.%s = %v, want %v", what, k, got, w)
		}
	}
	if wa, has := body["whatsapp"].(map[string]any); has {
		if wa["total_conversations"] != float64(u.waConvs) || wa["total_messages"] != float64(u.waMsgs) {
			t.Errorf("%s: whatsapp = %v, want %d conversations, %d messages", what, wa, u.waConvs, u.waMsgs)
		}
	}
}

// TestUsageAgreesWithConversations: summary, daily (every day of the range, zero days
// included), per-agent and company usage with by_agent, across several agents and
// days, equal to what the conversation records add up to.
func TestUsageAgreesWithConversations(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Metered")
	other := e.bigTenant("Unrelated")
	a, b, c := e.newAgent(tn, "Support Bot"), e.newAgent(tn, "Sales Bot"), e.newAgent(tn, "Idle Bot")
	oa := e.newAgent(other, "Other Bot")

	specs := []convSpec{
		{agent: a, caller: "+27821234567", started: day("2026-01-10", "10:00:00"), answered: true, dur: 212, status: "completed", success: bptr(true), transcript: sampleTranscript},
		{agent: a, caller: "+27821111111", started: day("2026-01-10", "23:59:30"), answered: true, dur: 95, status: "completed", success: bptr(false)}, // ends the next day
		{agent: b, caller: "+27821234567", started: day("2026-01-11", "09:00:00"), answered: true, dur: 61, status: "transferred", refer: 30, referTo: "+27215550000", success: bptr(true)},
		{agent: b, caller: "+27822222222", started: day("2026-01-13", "12:00:00"), status: "cancelled"},                      // never answered
		{agent: a, caller: "+27823333333", started: day("2026-01-13", "08:00:00"), answered: true, dur: 7, status: "failed"}, // not analysed
		{agent: b, caller: "+27824444444", started: day("2026-01-11", "14:00:00"), answered: true, dur: 45, status: "completed", success: bptr(true)},
		{agent: b, channel: "whatsapp", caller: "+27825555555", started: day("2026-01-11", "15:00:00"), answered: true, dur: 300, status: "completed", success: bptr(false), transcript: append(sampleTranscript, store.TranscriptEntry{Role: "user", Message: "Thanks", Timestamp: 9})},
		{agent: a, caller: "+27826666666", started: day("2026-01-13", "18:00:00"), answered: true, dur: 125, status: "completed", refer: 0, success: bptr(false)},
		{agent: a, caller: "+27827777777", started: day("2026-01-14", "11:00:00"), answered: true, transcript: sampleTranscript[:1]}, // still in progress
		{agent: c, caller: "+27828888888", started: day("2026-01-20", "11:00:00"), answered: true, dur: 100, status: "completed"},    // outside the range
		{agent: a, caller: "+27829999999", started: day("2026-01-08", "23:59:59"), answered: true, dur: 50, status: "completed"},     // the day before
	}
	for _, s := range specs {
		e.makeConv(tn.id, s)
	}
	e.makeConv(other.id, convSpec{agent: oa, caller: "+27821234567", started: day("2026-01-10", "12:00:00"), answered: true, dur: 999, status: "completed", success: bptr(true)})
	// An analysis that changes its mind moves the success counters with it.
	first := e.walk(p("/api/conversations/?agent_id=%d", b), tn.userKey, 100)
	if _, err := e.st.SetAnalysis(context.Background(), tn.id, first[len(first)-1], nil, bptr(false), nil); err != nil {
		t.Fatal(err)
	}

	var records []map[string]any
	for _, id := range e.walk("/api/conversations/", tn.userKey, 100) {
		records = append(records, e.must(200, "GET", p("/api/conversations/%d", id), tn.userKey, nil).json(t))
	}
	if len(records) != len(specs) {
		t.Fatalf("%d records, want %d", len(records), len(specs))
	}
	dayOf := func(c map[string]any) string { return c["started_at"].(string)[:10] }
	inRange := func(from, to string) func(c map[string]any) bool {
		return func(c map[string]any) bool { d := dayOf(c); return d >= from && d <= to }
	}
	and := func(f func(map[string]any) bool, agent int64) func(map[string]any) bool {
		return func(c map[string]any) bool { return f(c) && num(c["agent_id"]) == agent }
	}
	const from, to = "2026-01-09", "2026-01-14"
	q := "?start_date=" + from + "&end_date=" + to
	total := aggregate(records, inRange(from, to))
	if total.convs != 6 || total.waConvs != 1 || total.waMsgs != 4 {
		t.Fatalf("test data: %+v", total) // guards the test itself
	}

	// Summary and company usage (the same body, with by_agent).
	for _, path := range []string{"/api/usage/summary" + q, p("/api/companies/%d/usage", tn.id) + q} {
		for _, key := range []string{tn.userKey, tn.compKey} {
			s := e.must(200, "GET", path, key, nil).json(t)
			if per := s["period"].(map[string]any); per["start_date"] != from || per["end_date"] != to {
				t.Errorf("%s period: %v", path, per)
			}
			checkVoice(t, path, s, total)
			if num(s["agents_active"]) != 2 {
				t.Errorf("%s agents_active = %v, want 2", path, s["agents_active"])
			}
			by, _ := s["by_agent"].([]any)
			if len(by) != 2 {
				t.Fatalf("%s by_agent: %v", path, s["by_agent"])
			}
			var sumConvs float64
			for _, x := range by {
				x := x.(map[string]any)
				aid := num(x["agent_id"])
				u := aggregate(records, and(inRange(from, to), aid))
				name := map[int64]string{a: "Support Bot", b: "Sales Bot"}[aid]
				if x["agent_name"] != name || x["total_conversations"] != float64(u.convs) || x["voice_minutes"] != roundTo(float64(u.secs)/60, 2) ||
					x["sip_refer_minutes"] != roundTo(float64(u.refer)/60, 2) {
					t.Errorf("%s by_agent %v, want %+v", path, x, u)
				}
				sumConvs += x["total_conversations"].(float64)
			}
			if sumConvs != float64(total.convs) {
				t.Errorf("%s: by_agent adds up to %v conversations, total %d", path, sumConvs, total.convs)
			}
			if by[0].(map[string]any)["voice_minutes"].(float64) < by[1].(map[string]any)["voice_minutes"].(float64) {
				t.Errorf("%s: by_agent not ordered by minutes: %v", path, by)
			}
		}
	}

	// Daily: every day of the range, in order, zero days included.
	for _, agent := range []int64{0, a, b, c} {
		path := "/api/usage/daily" + q
		keep := func(d string) func(map[string]any) bool { return inRange(d, d) }
		if agent != 0 {
			path += p("&agent_id=%d", agent)
		}
		days := e.must(200, "GET", path, tn.userKey, nil).list(t)
		var dates []string
		var sum float64
		for _, d := range days {
			d := d.(map[string]any)
			date := d["date"].(string)
			dates = append(dates, date)
			f := keep(date)
			if agent != 0 {
				f = and(f, agent)
			}
			checkVoice(t, path+" "+date, d, aggregate(records, f))
			sum += d["voice"].(map[string]any)["total_conversations"].(float64)
		}
		if want := []string{"2026-01-09", "2026-01-10", "2026-01-11", "2026-01-12", "2026-01-13", "2026-01-14"}; !slices.Equal(dates, want) {
			t.Errorf("%s dates: %v", path, dates)
		}
		f := inRange(from, to)
		if agent != 0 {
			f = and(f, agent)
		}
		if want := aggregate(records, f); sum != float64(want.convs) {
			t.Errorf("%s: days add up to %v conversations, want %d", path, sum, want.convs)
		}
	}

	// Per agent.
	for _, agent := range []int64{a, b, c} {
		u := e.must(200, "GET", p("/api/agents/%d/usage", agent)+q, tn.userKey, nil).json(t)
		if num(u["agent_id"]) != agent || u["period"].(map[string]any)["start_date"] != from {
			t.Errorf("agent usage: %v", u)
		}
		checkVoice(t, p("agent %d usage", agent), u, aggregate(records, and(inRange(from, to), agent)))
	}
	// Agent c's only conversation is outside the range; a wider range finds it.
	wide := e.must(200, "GET", p("/api/agents/%d/usage?start_date=2026-01-01&end_date=2026-01-31", c), tn.userKey, nil).json(t)
	checkVoice(t, "agent c in January", wide, aggregate(records, and(inRange("2026-01-01", "2026-01-31"), c)))
	if wide["voice"].(map[string]any)["total_conversations"] != 1.0 {
		t.Fatalf("agent c in January: %v", wide["voice"])
	}
	// One day.
	one := e.must(200, "GET", "/api/usage/summary?start_date=2026-01-11&end_date=2026-01-11", tn.userKey, nil).json(t)
	checkVoice(t, "2026-01-11", one, aggregate(records, inRange("2026-01-11", "2026-01-11")))
	e.fails(404, "not_found", "agent", "GET", "/api/agents/424242/usage", tn.userKey, nil)
	e.fails(404, "not_found", "agent", "GET", "/api/usage/daily"+q+"&agent_id=424242", tn.userKey, nil)
}

// TestUsageDates: dates are YYYY-MM-DD, start ≤ end, at most 366 days; daily needs both.
func TestUsageDates(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Calendar")
	aid := e.newAgent(tn, "Dated")
	paths := []string{"/api/usage/summary", "/api/usage/daily", p("/api/agents/%d/usage", aid), p("/api/companies/%d/usage", tn.id)}
	bad := []struct{ name, q, field string }{
		{"start not a date", "start_date=yesterday&end_date=2026-03-01", "start_date"},
		{"start without zero padding", "start_date=2026-3-1&end_date=2026-03-02", "start_date"},
		{"start a timestamp", "start_date=2026-03-01T00:00:00Z&end_date=2026-03-02", "start_date"},
		{"start day out of range", "start_date=2026-02-30&end_date=2026-03-02", "start_date"},
		{"end not a date", "start_date=2026-03-01&end_date=03/02/2026", "end_date"},
		{"end month 13", "start_date=2026-03-01&end_date=2026-13-01", "end_date"},
		{"start after end", "start_date=2026-03-10&end_date=2026-03-09", "start_date"},
		{"367 days", "start_date=2025-01-01&end_date=2026-01-02", "366"},
		{"367 days names the field", "start_date=2025-01-01&end_date=2026-01-02", "end_date"},
	}
	for _, path := range paths {
		for _, c := range bad {
			isError(t, path+": "+c.name, e.do("GET", path+"?"+c.q, tn.userKey, nil), 422, "validation_error", c.field)
		}
		for _, q := range []string{"start_date=2025-01-01&end_date=2026-01-01", "start_date=2024-01-01&end_date=2024-12-31",
			"start_date=2026-03-01&end_date=2026-03-01"} {
			e.must(200, "GET", path+"?"+q, tn.userKey, nil)
		}
	}
	days := e.must(200, "GET", "/api/usage/daily?start_date=2024-01-01&end_date=2024-12-31", tn.userKey, nil).list(t)
	if len(days) != 366 || days[59].(map[string]any)["date"] != "2024-02-29" {
		t.Fatalf("leap year: %d days", len(days))
	}
	e.fails(422, "validation_error", "start_date", "GET", "/api/usage/daily?end_date=2026-03-01", tn.userKey, nil)
	e.fails(422, "validation_error", "end_date", "GET", "/api/usage/daily?start_date=2026-03-01", tn.userKey, nil)
	e.fails(422, "validation_error", "start_date", "GET", "/api/usage/daily", tn.userKey, nil)
	e.fails(422, "validation_error", "agent_id", "GET", "/api/usage/daily?start_date=2026-03-01&end_date=2026-03-02&agent_id=x", tn.userKey, nil)

	// Without dates: from the first day of this month to today.
	now := time.Now().UTC()
	s := e.must(200, "GET", "/api/usage/summary", tn.userKey, nil).json(t)
	per := s["period"].(map[string]any)
	if per["start_date"] != now.Format("2006-01")+"-01" || per["end_date"] != now.Format("2006-01-02") {
		t.Fatalf("default period: %v", per)
	}
	if by, ok := s["by_agent"].([]any); !ok || len(by) != 0 || s["agents_active"] != 0.0 {
		t.Fatalf("empty usage: %v", s)
	}
}

// TestContacts: a contact appears the first time a caller number reaches the company;
// list with search by number, detail with recent conversations, update.
func TestContacts(t *testing.T) {
	e := newEnv(t, envOpts{})
	tn := e.bigTenant("Contactable")
	other := e.bigTenant("Else")
	a := e.newAgent(tn, "Front Desk")
	c1 := e.makeConv(tn.id, convSpec{agent: a, caller: "+27821234567", started: day("2026-02-01", "09:00:00"), answered: true, dur: 60, status: "completed"})
	c2 := e.makeConv(tn.id, convSpec{agent: a, caller: "+27831112222", started: day("2026-02-01", "10:00:00"), answered: true, dur: 30, status: "completed"})
	c3 := e.makeConv(tn.id, convSpec{agent: a, caller: "+27821234567", started: day("2026-02-02", "09:00:00"), answered: true, dur: 90, status: "completed"})
	e.makeConv(tn.id, convSpec{agent: a, started: day("2026-02-02", "09:30:00"), status: "cancelled"}) // withheld number: no contact
	e.makeConv(other.id, convSpec{agent: e.newAgent(other, "Theirs"), caller: "+27821234567", started: day("2026-02-01", "09:00:00"), status: "cancelled"})
	if c1.ContactID == nil || c3.ContactID == nil || *c1.ContactID != *c3.ContactID || *c2.ContactID == *c1.ContactID {
		t.Fatalf("contact ids: %v %v %v", c1.ContactID, c2.ContactID, c3.ContactID)
	}
	first, second := *c1.ContactID, *c2.ContactID

	l := e.walk("/api/contacts/", tn.userKey, 1)
	if !slices.Equal(l, []int64{second, first}) {
		t.Fatalf("contacts: %v", l)
	}
	items, _, _ := pageOf(t, e.must(200, "GET", "/api/contacts", tn.compKey, nil))
	for _, it := range items {
		it := it.(map[string]any)
		want := map[int64]float64{first: 2, second: 1}[num(it["id"])]
		if it["conversation_count"] != want || num(it["company_id"]) != tn.id || it["first_seen_at"] == nil || it["last_seen_at"] == nil {
			t.Fatalf("contact: %v", it)
		}
	}
	for _, c := range []struct {
		q    string
		want []int64
	}{
		{"?search=%2B27821234567", []int64{first}},
		{"?search=2783", []int64{second}},
		{"?search=%2B27%2083", []int64{second}},
		{"?search=27", []int64{second, first}},
		{"?search=999", nil},
		{"?search=thabo", nil}, // a search by number with no digit in it finds no number
		{"?search=%20", []int64{second, first}},
	} {
		if got := e.walk("/api/contacts/"+c.q, tn.userKey, 30); !slices.Equal(got, c.want) {
			t.Errorf("contacts%s: %v, want %v", c.q, got, c.want)
		}
	}
	isError(t, "contacts limit", e.do("GET", "/api/contacts/?limit=500", tn.userKey, nil), 422, "validation_error", "limit")

	d := e.must(200, "GET", p("/api/contacts/%d", first), tn.userKey, nil).json(t)
	if d["phone_number"] != "+27821234567" || d["conversation_count"] != 2.0 || d["last_seen_at"] != "2026-02-02T09:00:00Z" || d["first_seen_at"] == nil {
		t.Fatalf("contact detail: %v", d)
	}
	rc, _ := d["recent_conversations"].([]any)
	if got := ids(rc); !slices.Equal(got, []int64{c3.ID, c1.ID}) {
		t.Fatalf("recent conversations: %v", got)
	}
	if _, has := rc[0].(map[string]any)["transcript"]; has {
		t.Fatalf("recent conversations carry transcripts")
	}

	u := e.must(200, "PUT", p("/api/contacts/%d", first), tn.userKey, map[string]any{"name": "Thabo Nkosi", "email": "thabo@example.co.za",
		"notes": "Prefers afternoon calls.", "tags": []string{"vip", "pro-plan"}}).json(t)
	if u["name"] != "Thabo Nkosi" || u["email"] != "thabo@example.co.za" || u["notes"] != "Prefers afternoon calls." ||
		!slices.Equal(toStrings(u["tags"]), []string{"vip", "pro-plan"}) || u["phone_number"] != "+27821234567" {
		t.Fatalf("updated contact: %v", u)
	}
	u = e.must(200, "PUT", p("/api/contacts/%d", first), tn.compKey, map[string]any{"notes": "Call after 2pm."}).json(t)
	if u["name"] != "Thabo Nkosi" || u["notes"] != "Call after 2pm." || len(toStrings(u["tags"])) != 2 {
		t.Fatalf("partial contact update: %v", u)
	}
	if g := e.must(200, "GET", p("/api/contacts/%d", first), tn.userKey, nil).json(t); g["notes"] != "Call after 2pm." || g["email"] != "thabo@example.co.za" {
		t.Fatalf("stored contact: %v", g)
	}
	for _, c := range []struct {
		name  string
		body  any
		field string
	}{
		{"email invalid", map[string]any{"email": "thabo"}, "email"},
		{"name too long", map[string]any{"name": strs(201, "n")}, "name"},
		{"tags not an array", map[string]any{"tags": "vip"}, "tags"},
		{"tag empty", map[string]any{"tags": []string{"vip", ""}}, "tags[1]"},
		{"tags of numbers", map[string]any{"tags": []int{1}}, "tags"},
		{"phone number is not editable", map[string]any{"phone_number": "+27820000000"}, "phone_number"},
	} {
		isError(t, c.name, e.do("PUT", p("/api/contacts/%d", first), tn.userKey, c.body), 422, "validation_error", c.field)
	}
	e.fails(404, "not_found", "contact", "GET", "/api/contacts/424242", tn.userKey, nil)
	e.fails(404, "not_found", "contact", "PUT", "/api/contacts/424242", tn.userKey, map[string]any{"name": "x"})
	e.fails(422, "validation_error", "contact_id", "GET", "/api/contacts/thabo", tn.userKey, nil)

	// The other company has its own contact for the same number.
	ol := e.walk("/api/contacts/", other.userKey, 30)
	if len(ol) != 1 || ol[0] == first {
		t.Fatalf("other company's contacts: %v", ol)
	}
	if d := e.must(200, "GET", p("/api/contacts/%d", ol[0]), other.userKey, nil).json(t); d["name"] != nil || d["conversation_count"] != 1.0 {
		t.Fatalf("other company's contact: %v", d)
	}
}
