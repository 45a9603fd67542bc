package sip

import (
	"fmt"
	"mime"
	"runtime/debug"
	"slices"
	"strings"

	gsip "github.com/emiago/sipgo/sip"
)

const allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, REFER"

// supportedExt are the option tags we implement (Require/Supported).
var supportedExt = []string{"timer", "replaces", "norefersub"}

func (s *Server) register() {
	s.srv.OnInvite(s.guard(s.onInvite))
	s.srv.OnAck(s.guardAck(s.onAck))
	s.srv.OnBye(s.guard(s.onBye))
	s.srv.OnCancel(s.guard(func(req *gsip.Request, tx gsip.ServerTransaction) {
		// Only CANCELs that match no pending INVITE get here; sipgo answers the others
		// (200 to the CANCEL, 487 to the INVITE) and tells the call through OnCancel.
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
	}))
	s.srv.OnOptions(s.guard(s.onOptions))
	s.srv.OnUpdate(s.guard(s.onUpdate))
	s.srv.OnInfo(s.guard(s.onInfo))
	s.srv.OnNotify(s.guard(s.onNotify))
	s.srv.OnRefer(s.guard(func(req *gsip.Request, tx gsip.ServerTransaction) {
		// Transfers are started by the agent, not by the far end.
		respond(tx, req, 403, "Forbidden")
	}))
	s.srv.OnPrack(s.guard(func(req *gsip.Request, tx gsip.ServerTransaction) {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
	}))
	notAllowed := s.guard(func(req *gsip.Request, tx gsip.ServerTransaction) {
		respond(tx, req, 405, "Method Not Allowed", gsip.NewHeader("Allow", allowMethods))
	})
	for _, m := range []gsip.RequestMethod{gsip.REGISTER, gsip.SUBSCRIBE, gsip.PUBLISH, gsip.MESSAGE} {
		s.srv.OnRequest(m, notAllowed)
	}
	s.srv.OnNoRoute(s.guard(func(req *gsip.Request, tx gsip.ServerTransaction) {
		respond(tx, req, 501, "Not Implemented", gsip.NewHeader("Allow", allowMethods))
	}))
}

// respond sends a final or provisional response built from req.
func respond(tx gsip.ServerTransaction, req *gsip.Request, code int, reason string, hdrs ...gsip.Header) {
	res := gsip.NewResponseFromRequest(req, code, reason, nil)
	res.SipVersion = "SIP/2.0" // also to a request of another version (505)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// guard wraps a handler: it recovers panics (a bug must not take every call down)
// and rejects requests that are well-formed SIP but not acceptable (RFC 3261 §8.2,
// RFC 4475): wrong version 505, unknown URI scheme 416, missing or duplicated
// mandatory headers 400, CSeq method mismatch 400, unknown required extensions 420.
func (s *Server) guard(h func(*gsip.Request, gsip.ServerTransaction)) func(*gsip.Request, gsip.ServerTransaction) {
	return func(req *gsip.Request, tx gsip.ServerTransaction) {
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic in SIP handler", "method", req.Method, "panic", v, "stack", string(debug.Stack()))
				respond(tx, req, 500, "Server Internal Error")
			}
		}()
		if code, reason, hdrs := validate(req); code != 0 {
			s.obs.Rejected(code)
			respond(tx, req, code, reason, hdrs...)
			if req.IsInvite() {
				s.rejected.add(tx)
			}
			return
		}
		h(req, tx)
	}
}

// guardAck never responds (an ACK has no response), it only recovers panics.
func (s *Server) guardAck(h func(*gsip.Request, gsip.ServerTransaction)) func(*gsip.Request, gsip.ServerTransaction) {
	return func(req *gsip.Request, tx gsip.ServerTransaction) {
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic in SIP ACK handler", "panic", v, "stack", string(debug.Stack()))
			}
		}()
		if req.CallID() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil {
			return
		}
		h(req, tx)
	}
}

func validate(req *gsip.Request) (int, string, []gsip.Header) {
	if req.SipVersion != "SIP/2.0" {
		return 505, "Version Not Supported", nil
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel":
	default:
		return 416, "Unsupported URI Scheme", nil
	}
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		return 400, "Bad Request (Missing Required Header)", nil
	}
	for _, name := range []string{"From", "To", "Call-ID", "CSeq", "Content-Length", "Max-Forwards"} {
		if hs := req.GetHeaders(name); len(hs) > 1 {
			first := hs[0].Value()
			for _, h := range hs[1:] {
				if h.Value() != first {
					return 400, fmt.Sprintf("Bad Request (Multiple %s)", name), nil
				}
			}
		}
	}
	if !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		return 400, "Bad Request (CSeq Method Mismatch)", nil
	}
	if len(req.Recipient.Headers) > 0 {
		return 400, "Bad Request (Headers in Request-URI)", nil
	}
	var unsupported []string
	for _, name := range []string{"Require", "Proxy-Require"} {
		for _, h := range req.GetHeaders(name) {
			for _, tag := range strings.Split(h.Value(), ",") {
				tag = strings.TrimSpace(tag)
				if tag != "" && !slices.Contains(supportedExt, strings.ToLower(tag)) && !slices.Contains(unsupported, tag) {
					unsupported = append(unsupported, tag)
				}
			}
		}
	}
	if len(unsupported) > 0 && req.Method != gsip.ACK && req.Method != gsip.CANCEL {
		return 420, "Bad Extension", []gsip.Header{gsip.NewHeader("Unsupported", strings.Join(unsupported, ", "))}
	}
	if req.Method == gsip.INVITE || req.Method == gsip.UPDATE {
		if len(req.Body()) > 0 {
			if _, err := sdpBody(req); err != nil {
				return 415, "Unsupported Media Type", []gsip.Header{gsip.NewHeader("Accept", "application/sdp")}
			}
		}
		if h := req.GetHeader("Accept"); h != nil && req.Method == gsip.INVITE && !acceptsSDP(h.Value()) {
			return 406, "Not Acceptable", []gsip.Header{gsip.NewHeader("Accept", "application/sdp")}
		}
	}
	return 0, "", nil
}

func acceptsSDP(v string) bool {
	if strings.TrimSpace(v) == "" {
		return true
	}
	for _, t := range strings.Split(v, ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(t), ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "application/sdp", "application/*", "*/*":
			return true
		}
	}
	return false
}

// errNotSDP: the body is not SDP.
var errNotSDP = fmt.Errorf("body is not application/sdp")

// sdpBody returns the SDP of a request: the body when it is application/sdp, or the
// application/sdp part of a multipart/mixed body. No body: nil, nil.
func sdpBody(req *gsip.Request) ([]byte, error) {
	body := req.Body()
	if len(body) == 0 {
		return nil, nil
	}
	ct := "application/sdp"
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	if h := req.GetHeader("Content-Encoding"); h != nil && !strings.EqualFold(strings.TrimSpace(h.Value()), "identity") {
		return nil, errNotSDP
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, errNotSDP
	}
	switch mt {
	case "application/sdp":
		return body, nil
	case "multipart/mixed", "multipart/alternative", "multipart/related":
		return multipartSDP(body, params["boundary"])
	}
	return nil, errNotSDP
}

func multipartSDP(body []byte, boundary string) ([]byte, error) {
	if boundary == "" {
		return nil, errNotSDP
	}
	parts := strings.Split(string(body), "--"+boundary)
	for _, p := range parts[1:] {
		p = strings.TrimLeft(p, "\r\n")
		head, content, ok := strings.Cut(p, "\r\n\r\n")
		if !ok {
			head, content, ok = strings.Cut(p, "\n\n")
		}
		if !ok {
			continue
		}
		for _, l := range strings.Split(head, "\n") {
			name, val, _ := strings.Cut(l, ":")
			if strings.EqualFold(strings.TrimSpace(name), "Content-Type") {
				if mt, _, err := mime.ParseMediaType(strings.TrimSpace(val)); err == nil && mt == "application/sdp" {
					return []byte(strings.TrimRight(content, "\r\n") + "\r\n"), nil
				}
			}
		}
	}
	return nil, errNotSDP
}

func (s *Server) onOptions(req *gsip.Request, tx gsip.ServerTransaction) {
	hdrs := []gsip.Header{gsip.NewHeader("Allow", allowMethods), gsip.NewHeader("Accept", "application/sdp"),
		gsip.NewHeader("Supported", strings.Join(supportedExt, ", "))}
	if s.draining.Load() && !hasToTag(req) {
		// A proxy probing us (Kamailio's dispatcher) takes a draining node out.
		respond(tx, req, 503, "Service Unavailable", append(hdrs, gsip.NewHeader("Retry-After", "30"))...)
		return
	}
	respond(tx, req, 200, "OK", hdrs...)
}

func hasToTag(req *gsip.Request) bool { return req.To() != nil && req.To().Params.Has("tag") }
