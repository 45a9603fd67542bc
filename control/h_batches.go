package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/cxco/gateway/callpath/batch"
	"github.com/cxco/gateway/store"
)

// Batch calling: an agent calls a list of recipients at a pace, within calling
// hours, with retries (callpath/batch works them on the nodes, one node per
// batch at a time).

func batchSchemas() js {
	recipient := strict(object([]string{"phone_number"}, js{
		"phone_number":      str("E.164"),
		"dynamic_variables": js{"type": "object", "additionalProperties": js{"type": []string{"string", "number", "boolean"}}},
		"time_zone":         str("IANA zone for calling hours (default: the zone of the number's country when it has one clock, else the batch's)")}))
	return js{
		"BatchCreate": strict(object([]string{"name", "recipients"}, js{
			"name":                 strLen(1, 200),
			"from":                 str("one of the company's numbers (E.164); default the agent's"),
			"calls_per_second":     js{"type": "number", "minimum": 0, "maximum": batch.MaxCallsPerSecond, "default": batch.DefaultCallsPerSecond},
			"max_concurrent_calls": js{"type": "integer", "minimum": 0, "maximum": batch.MaxConcurrent, "default": batch.DefaultMaxConcurrent},
			"calling_hours": strict(object([]string{"start", "end"}, js{"start": str("HH:MM, the recipient's time"), "end": str("HH:MM"),
				"days": js{"type": "array", "items": strEnum("mon", "tue", "wed", "thu", "fri", "sat", "sun")}})),
			"time_zone": str("IANA zone for recipients whose country has several"),
			"retry": strict(object(nil, js{"max_attempts": js{"type": "integer", "minimum": 1, "maximum": batch.MaxAttempts, "default": batch.DefaultMaxAttempts},
				"delay_seconds": js{"type": "number", "minimum": 0, "default": batch.DefaultRetryDelay.Seconds()},
				"backoff":       js{"type": "number", "minimum": 1, "default": batch.DefaultBackoff}})),
			"ring_timeout_seconds": js{"type": "integer", "minimum": batch.MinRingTimeout, "maximum": batch.MaxRingTimeout, "default": batch.DefaultRingTimeout,
				"description": "how long each call may ring before it is cancelled (no_answer, retried by the policy)"},
			"machine_detection": js{"type": "string", "enum": []string{"off", "detect", "hangup"}, "default": "off",
				"description": "each call's answering-machine detection, as for POST /api/agents/{agent_id}/calls: detect holds the agent's opening line until the verdict " +
					"(recorded on the conversation and as the recipient's last_attempt.machine_detection); hangup also ends a machine's call. An answered call " +
					"is answered whatever the verdict: a machine is not called again"},
			"hide_caller_id": js{"type": "boolean", "default": false, "description": "withhold the caller ID on each call, as for POST /api/agents/{agent_id}/calls"},
			"recipients":     js{"type": "array", "items": recipient, "minItems": 1, "maxItems": 10000},
		})),
		"Batch": object([]string{"id", "agent_id", "name", "status", "total", "counts"}, js{
			"id": integer(), "company_id": integer(), "agent_id": integer(), "name": str(), "from": str(),
			"calls_per_second": number(), "max_concurrent_calls": integer(), "calling_hours": freeObject(), "time_zone": str(),
			"retry": freeObject(), "ring_timeout_seconds": integer(), "machine_detection": str("detect or hangup; absent: off"), "hide_caller_id": boolean(),
			"created_at": dateTime(), "status": str("running, completed or cancelled"),
			"finished_at": nullable("string"), "total": integer(),
			"counts": js{"type": "object", "additionalProperties": js{"type": "integer"},
				"description": "recipients per status: pending, calling, retry, answered, busy, no_answer, rejected, failed, cancelled, interrupted"}}),
		"BatchPage": page("Batch"),
		"BatchRecipientPage": object([]string{"items"}, js{
			"items": js{"type": "array", "items": object([]string{"index", "phone_number", "status", "attempts"}, js{
				"index": integer(), "phone_number": str(), "dynamic_variables": freeObject(), "time_zone": str(),
				"status": str(), "attempts": integer(), "next_attempt_at": nullable("string"),
				"last_attempt": js{"type": []string{"object", "null"}, "description": "outcome, sip_status, conversation_id, machine_detection (human, machine or unknown, when detection ran), error, started_at, ended_at"}})},
			"next_cursor": nullable("string")}),
	}
}

func (s *Server) batchRoutes() []*route {
	b := func(method, path, summary string, rl role, status int, body, resp string, query []param, errs []int, h func(*call) (result, error)) *route {
		return &route{method: method, path: path, auth: authUser, role: rl, tag: "Batches", summary: summary, resource: "batch",
			body: body, resp: resp, query: query, status: status, errors: errs, h: h}
	}
	return []*route{
		b("POST", "/api/agents/{agent_id}/batches", "Start a batch of outbound calls: up to 10,000 recipients, a pace, calling hours in each recipient's time zone, retries for busy and no answer",
			roleMember, 201, "BatchCreate", "Batch", nil, []int{404, 409, 422}, s.createBatch),
		b("GET", "/api/batches", "The company's batches, newest first, with their progress", roleViewer, 200, "", "BatchPage",
			pageParams(q("agent_id", "integer", "only this agent's"), q("status", "string", "running, completed or cancelled")), []int{422}, s.listBatches),
		b("GET", "/api/agents/{agent_id}/batches", "The agent's batches, newest first, with their progress", roleViewer, 200, "", "BatchPage",
			pageParams(q("status", "string", "running, completed or cancelled")), []int{404, 422}, s.listAgentBatches),
		b("GET", "/api/batches/{batch_id}", "Get a batch and its progress (recipients per status)", roleViewer, 200, "", "Batch", nil, []int{404, 422}, s.getBatch),
		b("GET", "/api/batches/{batch_id}/recipients", "The batch's recipients, in order, with each one's status, attempts and last call",
			roleViewer, 200, "", "BatchRecipientPage", []param{q("cursor", "string", "next_cursor of the previous page"), q("limit", "integer", "1-1000 (default 100)")},
			[]int{404, 422}, s.batchRecipients),
		b("POST", "/api/batches/{batch_id}/cancel", "Cancel a batch: recipients not yet called are cancelled, calls under way finish",
			roleMember, 200, "", "Batch", nil, []int{404, 409, 422}, s.cancelBatch),
	}
}

func (s *Server) createBatch(c *call) (result, error) {
	a, err := c.agent()
	if err != nil {
		return result{}, err
	}
	var req batch.Request
	dec := json.NewDecoder(http.MaxBytesReader(c.w, c.r.Body, 8<<20)) // 10,000 recipients with their variables
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return result{}, invalid("body: %s", err.Error())
	}
	if a.Status != store.AgentActive {
		return result{}, errf(http.StatusConflict, typeConflict, "agent %d is %s: publish or resume it before it places calls", a.ID, a.Status)
	}
	if req.From != "" {
		e, okFrom := store.NormalizeE164(req.From)
		nums, err := s.st.CompanyNumbers(c.ctx, c.companyID())
		if err != nil {
			return result{}, err
		}
		mine := false
		for _, pn := range nums {
			mine = mine || pn.Number == e
		}
		if !okFrom || !mine {
			return result{}, invalid("from: %q is not one of the company's numbers (GET /api/phone-numbers)", req.From)
		}
	}
	b, rs, err := batch.Prepare(req, c.companyID(), a.ID)
	var fe *batch.FieldError
	if errors.As(err, &fe) {
		return result{}, invalid("%s: %s", fe.Field, fe.Detail)
	}
	if err != nil {
		return result{}, err
	}
	out, err := s.st.CreateBatch(c.ctx, b, rs)
	if err != nil {
		return result{}, err
	}
	return created(out)
}

func (s *Server) listBatches(c *call) (result, error) {
	agentID, err := c.queryID("agent_id")
	if err != nil {
		return result{}, err
	}
	return s.batchPage(c, agentID)
}

func (s *Server) listAgentBatches(c *call) (result, error) {
	a, err := c.agent()
	if err != nil {
		return result{}, err
	}
	return s.batchPage(c, a.ID)
}

func (s *Server) batchPage(c *call, agentID int64) (result, error) {
	cursor, limit, err := c.paging()
	if err != nil {
		return result{}, err
	}
	status := c.query("status")
	if status != "" {
		if err := oneOf("status", status, string(store.BatchRunning), string(store.BatchCompleted), string(store.BatchCancelled)); err != nil {
			return result{}, err
		}
	}
	bs, more, err := s.st.ListBatches(c.ctx, c.companyID(), agentID, store.BatchStatus(status), cursor, limit)
	if err != nil {
		return result{}, err
	}
	var next int64
	if len(bs) > 0 {
		next = bs[len(bs)-1].ID
	}
	return ok(newPage(bs, more, next))
}

func (s *Server) getBatch(c *call) (result, error) {
	id, err := c.pathID("batch_id")
	if err != nil {
		return result{}, err
	}
	b, err := s.st.GetBatch(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	return ok(b)
}

func (s *Server) batchRecipients(c *call) (result, error) {
	id, err := c.pathID("batch_id")
	if err != nil {
		return result{}, err
	}
	from, limit := 0, 100
	if v := c.query("cursor"); v != "" {
		if from, err = strconv.Atoi(v); err != nil || from < 0 {
			return result{}, invalid("cursor: must be the next_cursor of the previous page")
		}
	}
	if v := c.query("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return result{}, invalid("limit: must be between 1 and 1000")
		}
	}
	b, err := s.st.GetBatch(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	rs, err := s.st.BatchRecipients(c.ctx, c.companyID(), id, from, limit)
	if err != nil {
		return result{}, err
	}
	var next *string
	if n := from + len(rs); n < b.Total && len(rs) > 0 {
		v := fmt.Sprint(n)
		next = &v
	}
	if rs == nil {
		rs = []store.BatchRecipient{}
	}
	return ok(map[string]any{"items": rs, "next_cursor": next})
}

func (s *Server) cancelBatch(c *call) (result, error) {
	id, err := c.pathID("batch_id")
	if err != nil {
		return result{}, err
	}
	b, err := s.st.CancelBatch(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	return ok(b)
}
