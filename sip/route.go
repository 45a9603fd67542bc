package sip

import (
	"context"
	"errors"
	"strings"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/store"
)

// route is where a call goes.
type route struct {
	echo    bool
	number  string // the dialled number, E.164
	company *store.Company
	agent   *store.Agent
}

// dialled reads the number a request is for, as the trunk wrote it: the
// Request-URI user, else the To user. The trunk's number rule makes it E.164.
func dialled(req *gsip.Request) string {
	user := req.Recipient.User
	if req.Recipient.Scheme == "tel" {
		user = strings.TrimPrefix(req.Recipient.Raw(), "tel:") // sipgo keeps a tel: URI's number raw
	}
	if user == "" && req.To() != nil {
		user = req.To().Address.User
	}
	user, _, _ = strings.Cut(user, ";")
	return user
}

// callerNumber is the caller's number from From (or P-Asserted-Identity), E.164
// (under the trunk's number rule) when it is one; "anonymous" when the caller
// withheld it (callerWithheld).
func callerNumber(req *gsip.Request, rule store.NumberRule) string {
	if callerWithheld(req) {
		return "anonymous"
	}
	user := ""
	if h := req.GetHeader("P-Asserted-Identity"); h != nil {
		var u gsip.Uri
		var p gsip.HeaderParams
		if _, err := gsip.ParseAddressValue(h.Value(), &u, &p); err == nil {
			user = u.User
			if u.Scheme == "tel" {
				user = strings.TrimPrefix(u.Raw(), "tel:") // sipgo keeps a tel: URI's number raw
			}
		}
	}
	if user == "" && req.From() != nil {
		user = req.From().Address.User
	}
	if n := rule.Normalize(user); n != "" && len(n) >= 4 && !strings.ContainsAny(user, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@") {
		return n
	}
	if user == "" {
		return "anonymous"
	}
	return user
}

// callerWithheld: the caller asked that its identity not reach the called
// party — Privacy: id (RFC 3325 §9.3: P-Asserted-Identity is for the network
// only), user or header (RFC 3323 §4.2). The carrier's network delivers the
// asserted number to us as a trusted node; the agent, the records and the
// webhooks are the called party, and get "anonymous", as a phone with CLIR
// shows no number.
func callerWithheld(req *gsip.Request) bool {
	for _, h := range req.GetHeaders("Privacy") {
		for _, v := range strings.FieldsFunc(h.Value(), func(r rune) bool { return r == ';' || r == ',' }) {
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "id", "user", "header":
				return true
			}
		}
	}
	return false
}

// resolve finds the route of a dialled number, or the SIP status that refuses it.
func (s *Server) resolve(ctx context.Context, number string) (*route, *callpath.Refusal) {
	if number == "" {
		return nil, callpath.Refuse(404, "Not Found", callpath.UnknownNumber, nil)
	}
	if s.opt.EchoNumber != "" && number == s.opt.EchoNumber {
		return &route{echo: true, number: number}, nil
	}
	if s.opt.Calls == nil {
		return nil, callpath.Refuse(404, "Not Found", callpath.UnknownNumber, nil)
	}
	rt, err := s.opt.Calls.Route(ctx, number)
	if err != nil {
		var r *callpath.Refusal
		if errors.As(err, &r) {
			return nil, r
		}
		return nil, callpath.Unavailable(callpath.StoreUnavailable, err)
	}
	return &route{echo: rt.Echo, number: number, company: rt.Company, agent: rt.Agent}, nil
}
