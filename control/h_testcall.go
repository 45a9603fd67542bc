package control

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/cxco/gateway/store"
)

// TestCaller places the dashboard's "talk to this agent" WebRTC calls (bridge's
// TestCalls implements it; cmd/cxco wires it). The id of a test call is the id of
// its conversation.
//
// An error with an HTTPStatus() int method (an offer it cannot answer: 422; no
// capacity, provider down: 503) is answered with that status and its text as the
// detail; store errors map as usual (store.ErrNotFound: 404).
type TestCaller interface {
	StartTestCall(ctx context.Context, co *store.Company, a *store.Agent, offerSDP string) (id int64, answerSDP string, err error)
	EndTestCall(ctx context.Context, companyID, id int64) error
}

// testCallView is the answer to a test call's offer.
type testCallView struct {
	TestCallID     int64  `json:"test_call_id"`
	ConversationID int64  `json:"conversation_id"`
	Type           string `json:"type"`
	SDP            string `json:"sdp"`
}

func testCallSchemas() js {
	return js{
		"TestCallOffer": strict(object([]string{"sdp"}, js{
			"type": js{"type": "string", "enum": []string{"offer"}, "default": "offer"},
			"sdp":  str("the browser's SDP offer (RTCPeerConnection.localDescription.sdp once ICE gathering is complete); it must offer PCMU audio")})),
		"TestCall": object([]string{"test_call_id", "conversation_id", "type", "sdp"}, js{
			"test_call_id":    js{"type": "integer", "description": "hang up with DELETE /api/test-calls/{test_call_id}"},
			"conversation_id": js{"type": "integer", "description": "the call's conversation (caller_number webrtc): transcript, usage"},
			"type":            strEnum("answer"),
			"sdp":             str("our SDP answer, with every ICE candidate (no trickle)")}),
	}
}

// testCallRoutes are the test-call routes (added to the table in routes_extra.go).
func (s *Server) testCallRoutes() []*route {
	return []*route{
		{method: "POST", path: "/api/agents/{agent_id}/test-call", auth: authUser, role: roleMember, tag: "Agents",
			summary:  "Talk to an active agent from the browser: a WebRTC offer in, the answer out (the call runs like a phone call from caller \"webrtc\")",
			resource: "agent", body: "TestCallOffer", resp: "TestCall", status: http.StatusCreated,
			errors: []int{404, 409, 422}, h: s.startTestCall},
		{method: "DELETE", path: "/api/test-calls/{test_call_id}", auth: authUser, role: roleMember, tag: "Agents",
			summary:  "Hang up a test call; it returns once the conversation is recorded",
			resource: "test call", status: http.StatusNoContent, errors: []int{404, 422}, h: s.endTestCall},
	}
}

func (s *Server) startTestCall(c *call) (result, error) {
	a, err := c.agent()
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "sdp", "type")
	if err != nil {
		return result{}, err
	}
	var offer string
	if err := f.required("sdp"); err != nil {
		return result{}, err
	}
	if json.Unmarshal(f.m["sdp"], &offer) != nil || offer == "" { // not trimmed: SDP lines end in CRLF
		return result{}, invalid("sdp: must be a non-empty string (the SDP offer)")
	}
	if typ, err := f.str("type", false, 0, 0); err != nil {
		return result{}, err
	} else if typ != nil && *typ != "offer" {
		return result{}, invalid("type: must be \"offer\" (got %q)", *typ)
	}
	if a.Status != store.AgentActive {
		return result{}, errf(http.StatusConflict, typeConflict, "agent %d is %s: publish or resume it before talking to it", a.ID, a.Status)
	}
	if s.opts.TestCaller == nil {
		return result{}, errf(http.StatusServiceUnavailable, typeUnavailable, "test calls are not available on this gateway")
	}
	id, answer, err := s.opts.TestCaller.StartTestCall(c.ctx, c.company, a, offer)
	if err != nil {
		return result{}, testCallErr(err)
	}
	return created(testCallView{TestCallID: id, ConversationID: id, Type: "answer", SDP: answer})
}

func (s *Server) endTestCall(c *call) (result, error) {
	id, err := c.pathID("test_call_id")
	if err != nil {
		return result{}, err
	}
	if s.opts.TestCaller == nil {
		return result{}, notFound("test call")
	}
	if err := s.opts.TestCaller.EndTestCall(c.ctx, c.companyID(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return result{}, errf(http.StatusNotFound, typeNotFound, "test call %d not found (it may have ended already)", id)
		}
		return result{}, testCallErr(err)
	}
	return noContent()
}

// testCallErr maps a TestCaller's error: its own status when it has one.
func testCallErr(err error) error {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		typ := map[int]string{http.StatusUnprocessableEntity: typeValidation, http.StatusBadRequest: typeValidation,
			http.StatusConflict: typeConflict, http.StatusNotFound: typeNotFound}[hs.HTTPStatus()]
		if typ == "" {
			typ = typeUnavailable
			if hs.HTTPStatus() >= 500 && hs.HTTPStatus() != http.StatusServiceUnavailable {
				typ = typeInternal
			}
		}
		return errf(hs.HTTPStatus(), typ, "%s", err.Error())
	}
	return err
}
