package sip

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
)

// onAck takes the ACK of a 2xx (our 200 to the INVITE or to a re-INVITE). ACKs of
// non-2xx responses belong to their INVITE transaction and never get here.
func (s *Server) onAck(req *gsip.Request, _ gsip.ServerTransaction) {
	c := s.lookup(req)
	if c == nil {
		return
	}
	seq := req.CSeq().SeqNo
	c.s.mu.Lock()
	ch := c.acks[seq]
	delete(c.acks, seq)
	c.s.mu.Unlock()
	if ch == nil {
		return // a retransmitted ACK
	}
	if seq == c.invite.CSeq().SeqNo {
		c.onFirstAck(req)
	} else if c.lateOfferPending(seq) {
		c.applyAnswer(req)
	}
	ch <- struct{}{}
}

// onFirstAck completes the answer: with a late offer the ACK brings the SDP answer.
func (c *call) onFirstAck(req *gsip.Request) {
	c.ackOnce.Do(func() { close(c.acked) })
	if c.lateOffer {
		body, _ := sdpBody(req)
		n, err := c.local.ParseAnswer(body)
		if err != nil {
			c.log.Warn("the ACK carries no usable SDP answer", "err", err)
			c.cp.End(callpath.Fail(callpath.BadSDP))
			return
		}
		c.neg = n
		c.local.Fix(n)
		if e, ok := c.agent.(*echoPeer); ok {
			e.setFormat(n.Codec)
		}
		c.startMediaAndPeer()
	}
	if c.rec != nil {
		if err := c.rec.Answered(c.cp.Context(), c.AnsweredAt()); err != nil {
			c.log.Warn("could not record the answer time", "err", err)
		}
	}
}

func (c *call) lateOfferPending(seq uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reinviteLate == seq
}

// applyAnswer takes the SDP answer of a re-INVITE we answered with an offer.
func (c *call) applyAnswer(req *gsip.Request) {
	body, _ := sdpBody(req)
	n, err := c.local.ParseAnswer(body)
	if err != nil {
		c.log.Warn("re-INVITE ACK without a usable SDP answer", "err", err)
		return
	}
	c.applyNegotiation(n)
}

// answerOffer answers an in-dialog offer (re-INVITE or UPDATE) and applies it to the
// media; on a bad or unacceptable offer it has already answered 400/488 (the call
// goes on as it was) and returns false.
func (c *call) answerOffer(req *gsip.Request, tx gsip.ServerTransaction, offer []byte) ([]byte, bool) {
	ans, n, err := c.local.Answer(offer)
	if err != nil {
		if errors.Is(err, sdp.ErrMalformed) {
			respond(tx, req, 400, "Bad Request (Malformed SDP)")
		} else {
			_ = tx.Respond(notAcceptable(req, err, c.local.CurrentPolicy()))
		}
		return nil, false
	}
	c.applyNegotiation(n)
	c.log.Info("offer answered", "method", req.Method, "direction", n.Direction, "hold", n.Hold, "remote", n.Remote)
	return ans, true
}

func (c *call) applyNegotiation(n sdp.Negotiated) {
	c.stream.Update(n)
	c.setHold(n.Hold)
}

func (s *Server) onBye(req *gsip.Request, tx gsip.ServerTransaction) {
	c := s.lookup(req)
	if c == nil {
		if leg := s.lookupLeg(req); leg != nil {
			leg.onByeIn(req, tx)
			return
		}
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	respond(tx, req, 200, "OK")
	c.byeIn.Store(true)
	c.cp.End(callpath.End{Reason: callpath.CallerHangup})
}

// dialogCall finds the call an in-dialog request belongs to and accepts its
// CSeq (checkCSeq). nil: the request is already answered, 481 when it matches
// no call, 500 when its CSeq is out of order.
func (s *Server) dialogCall(req *gsip.Request, tx gsip.ServerTransaction) *call {
	c := s.lookup(req)
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return nil
	}
	if !c.checkCSeq(req, tx) {
		return nil
	}
	return c
}

// checkCSeq accepts an in-dialog request's CSeq (it must grow) and updates the
// remote target from its Contact. false: already answered with 500.
func (c *call) checkCSeq(req *gsip.Request, tx gsip.ServerTransaction) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq := req.CSeq().SeqNo
	if seq <= c.remoteCSeq && req.Method != gsip.ACK {
		respond(tx, req, 500, "Server Internal Error (CSeq out of order)", gsip.NewHeader("Retry-After", "1"))
		return false
	}
	c.remoteCSeq = seq
	if ct := req.Contact(); ct != nil && (req.Method == gsip.INVITE || req.Method == gsip.UPDATE) {
		c.remoteTarget = ct.Address
	}
	return true
}

// onReinvite answers a re-INVITE (hold, resume, media move, session refresh): a
// matching SDP answer, or an offer of ours when it came without SDP.
func (c *call) onReinvite(req *gsip.Request, tx gsip.ServerTransaction) {
	c.mu.Lock()
	busy := c.reinvite
	if !busy {
		c.reinvite = true
	}
	c.mu.Unlock()
	if busy {
		respond(tx, req, 491, "Request Pending")
		return
	}
	defer func() { c.mu.Lock(); c.reinvite = false; c.mu.Unlock() }()
	if !c.checkCSeq(req, tx) {
		return
	}
	offer, _ := sdpBody(req)
	var body []byte
	if offer != nil {
		ans, ok := c.answerOffer(req, tx, offer)
		if !ok {
			return // the call goes on as it was
		}
		body = ans
	} else {
		c.mu.Lock()
		c.reinviteLate = req.CSeq().SeqNo
		c.mu.Unlock()
		body = c.local.Offer(c.stream.Direction())
	}
	c.refreshedBy(req)
	res := gsip.NewSDPResponseFromRequest(req, body)
	res.AppendHeader(c.contact())
	res.AppendHeader(gsip.NewHeader("Allow", allowMethods))
	res.AppendHeader(gsip.NewHeader("Supported", strings.Join(supportedExt, ", ")))
	c.addSessionTimer(res)
	ack := make(chan struct{}, 1)
	c.s.mu.Lock()
	c.acks[req.CSeq().SeqNo] = ack
	c.s.mu.Unlock()
	if err := tx.Respond(res); err != nil {
		c.log.Warn("could not answer the re-INVITE", "err", err)
		return
	}
	if !c.retransmit2xx(tx, res, ack) {
		c.s.mu.Lock()
		delete(c.acks, req.CSeq().SeqNo)
		c.s.mu.Unlock()
	}
}

// onUpdate answers UPDATE (RFC 3311): a session refresh, with or without an SDP offer.
func (s *Server) onUpdate(req *gsip.Request, tx gsip.ServerTransaction) {
	c := s.dialogCall(req, tx)
	if c == nil {
		return
	}
	offer, _ := sdpBody(req)
	c.refreshedBy(req)
	var res *gsip.Response
	if offer != nil {
		ans, ok := c.answerOffer(req, tx, offer)
		if !ok {
			return
		}
		res = gsip.NewSDPResponseFromRequest(req, ans)
	} else {
		res = gsip.NewResponseFromRequest(req, 200, "OK", nil)
	}
	res.AppendHeader(c.contact())
	c.addSessionTimer(res)
	_ = tx.Respond(res)
}

// onInfo takes SIP INFO DTMF (application/dtmf-relay or application/dtmf), which
// some trunks send instead of RFC 4733 events.
func (s *Server) onInfo(req *gsip.Request, tx gsip.ServerTransaction) {
	c := s.dialogCall(req, tx)
	if c == nil {
		return
	}
	if d, ok := infoDigit(req); ok {
		c.cp.OnDigit(media.Digit{Digit: d, Arrival: time.Now()})
	}
	respond(tx, req, 200, "OK")
}

func infoDigit(req *gsip.Request) (rune, bool) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(h.Value())
	}
	body := strings.TrimSpace(string(req.Body()))
	switch {
	case strings.HasPrefix(ct, "application/dtmf-relay"):
		for _, l := range strings.Split(body, "\n") {
			k, v, ok := strings.Cut(l, "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "Signal") {
				body = strings.TrimSpace(v)
				break
			}
		}
	case strings.HasPrefix(ct, "application/dtmf"):
	default:
		return 0, false
	}
	if len(body) == 1 && strings.ContainsRune("0123456789*#ABCDabcd", rune(body[0])) {
		return rune(strings.ToUpper(body)[0]), true
	}
	if n, err := strconv.Atoi(body); err == nil && n >= 10 && n <= 11 {
		return map[int]rune{10: '*', 11: '#'}[n], true
	}
	return 0, false
}

// onNotify takes the progress of a transfer we asked for (REFER, RFC 3515).
func (s *Server) onNotify(req *gsip.Request, tx gsip.ServerTransaction) {
	c := s.dialogCall(req, tx)
	if c == nil {
		return
	}
	deliver, ok := c.onReferNotify(req)
	if !ok {
		respond(tx, req, 481, "Subscription Does Not Exist")
		return
	}
	// Answer first: a final sipfrag makes the transfer send BYE, which must not
	// overtake this 200.
	respond(tx, req, 200, "OK")
	deliver()
}

// newRequest builds an in-dialog request of ours (BYE, REFER, UPDATE): From is our
// side with our tag, To theirs, the next local CSeq, the route set, sent to the
// remote target (through the first route, or straight back to where the INVITE came
// from: symmetric signalling works through NAT).
func (c *call) newRequest(method gsip.RequestMethod) *gsip.Request {
	c.mu.Lock()
	c.localCSeq++
	seq := c.localCSeq
	target := c.remoteTarget
	routes := append([]string(nil), c.routeSet...)
	c.mu.Unlock()
	req := gsip.NewRequest(method, target)
	host := c.advertise.String()
	via := &gsip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(c.transport), Host: host, Port: c.localPort()}
	via.Params = gsip.NewParams()
	via.Params.Add("branch", gsip.GenerateBranchN(16))
	req.AppendHeader(via)
	ourTo := c.invite.To()
	from := &gsip.FromHeader{DisplayName: ourTo.DisplayName, Address: ourTo.Address, Params: ourTo.Params.Clone()}
	theirFrom := c.invite.From()
	to := &gsip.ToHeader{DisplayName: theirFrom.DisplayName, Address: theirFrom.Address, Params: theirFrom.Params.Clone()}
	req.AppendHeader(from)
	req.AppendHeader(to)
	cid := gsip.CallIDHeader(c.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&gsip.CSeqHeader{SeqNo: seq, MethodName: method})
	mf := gsip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(c.contact())
	for _, r := range routes {
		req.AppendHeader(gsip.NewHeader("Route", r))
	}
	req.SetTransport(strings.ToUpper(c.transport))
	c.s.fromListener(req, c.advertise)
	dest := c.source
	if len(routes) > 0 {
		var u gsip.Uri
		raw := strings.Trim(strings.TrimSpace(strings.SplitN(routes[0], ";", 2)[0]), "<>")
		if err := gsip.ParseUri(raw, &u); err == nil {
			port := u.Port
			if port == 0 {
				port = 5060
			}
			if a, err := netip.ParseAddr(strings.Trim(u.Host, "[]")); err == nil {
				dest = netip.AddrPortFrom(a, uint16(port)).String()
			} else {
				dest = u.Host + ":" + strconv.Itoa(port)
			}
		}
	}
	req.SetDestination(dest)
	req.SetBody(nil)
	return req
}

// sendBye ends the dialog from our side.
func (c *call) sendBye(ctx context.Context) {
	req := c.newRequest(gsip.BYE)
	res, err := c.s.cli.Do(ctx, req)
	switch {
	case err != nil:
		c.log.Warn("BYE failed", "err", err)
	case res.StatusCode >= 300 && res.StatusCode != 481:
		c.log.Warn("BYE refused", "status", res.StatusCode)
	}
}
