package sip

import (
	"context"
	"errors"
	"strings"

	gsip "github.com/emiago/sipgo/sip"

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
// (under the trunk's number rule) when it is one.
func callerNumber(req *gsip.Request, rule store.NumberRule) string {
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

// resolve finds the route of a dialled number, or the SIP status that refuses it.
func (s *Server) resolve(ctx context.Context, number string) (*route, *Status) {
	if number == "" {
		return nil, Reject(404, "Not Found", "unknown_number", nil)
	}
	if s.opt.EchoNumber != "" && number == s.opt.EchoNumber {
		return &route{echo: true, number: number}, nil
	}
	if s.opt.Store == nil {
		return nil, Reject(404, "Not Found", "unknown_number", nil)
	}
	unavailable := func(err error) *Status {
		st := Reject(503, "Service Unavailable", "store_unavailable", err)
		st.RetryAfter = 5
		return st
	}
	pn, err := s.opt.Store.GetNumberByE164(ctx, number)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Reject(404, "Not Found", "unknown_number", nil)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	if pn.Status == store.NumberEcho {
		return &route{echo: true, number: number}, nil
	}
	if pn.Status != store.NumberAssigned || pn.CompanyID == nil || pn.AgentID == nil {
		return nil, Reject(404, "Not Found", "unassigned_number", nil)
	}
	co, err := s.opt.Store.GetCompany(ctx, *pn.CompanyID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, Reject(404, "Not Found", "unassigned_number", nil)
		}
		return nil, unavailable(err)
	}
	if co.Status == store.CompanySuspended {
		return nil, Reject(403, "Forbidden", "company_suspended", nil)
	}
	a, err := s.opt.Store.GetAgent(ctx, co.ID, *pn.AgentID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, Reject(404, "Not Found", "unassigned_number", nil)
		}
		return nil, unavailable(err)
	}
	switch a.Status {
	case store.AgentActive:
		return &route{number: number, company: co, agent: a}, nil
	case store.AgentPaused, store.AgentDraft:
		return nil, Reject(480, "Temporarily Unavailable", "agent_"+a.Status, nil)
	default:
		return nil, Reject(404, "Not Found", "agent_archived", nil)
	}
}
