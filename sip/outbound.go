package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	gsip "github.com/emiago/sipgo/sip"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
)

// Outbound legs: an INVITE we send through a trunk — the far leg of a bridged
// transfer, and the calls the API places (outcall.go). dial sends it with our
// SDP offer, answers the trunk's digest challenge with its credentials, tells
// the caller of every provisional response, CANCELs when its context ends
// before the answer (RFC 3261 §9.1: sipgo waits for a provisional response
// first, then for the 487), ACKs the 2xx and returns the leg with its media
// stream ready to start.

// dialOptions describe one outbound INVITE.
type dialOptions struct {
	trunk  *trunk
	target string // E.164 (at the trunk) or a sip: URI
	// dest and transport are where the INVITE goes when the trunk has no URI
	// (a bridged transfer goes back to the trunk the call came from).
	dest, transport string
	advertise       netip.Addr
	fromUser        string // the From number (caller ID)
	// assertID adds P-Asserted-Identity with the From number (RFC 3325): the
	// trunk's network trusts us to say who calls.
	assertID bool
	// hideID withholds the caller ID (RFC 3323 §4.1.1.3, RFC 3325 §9.3): an
	// anonymous From and Privacy: id, the number only in P-Asserted-Identity
	// for the trunk's network (billing, emergency), which removes it before
	// the callee.
	hideID  bool
	callID  string // "" for a new one
	headers []gsip.Header
	log     *slog.Logger
	// onResponse is told of every response to the INVITE (sipgo's goroutine,
	// in order) with the moment it arrived.
	onResponse func(res *gsip.Response, at time.Time)
	// pace, when set, is waited for right before the INVITE is sent.
	pace func(context.Context) error
	// onBye: the far end hung up (its BYE is answered already).
	onBye func()
}

// dialError is why an outbound INVITE was not answered.
type dialError struct {
	Status  int // the final response's status; 0 when none came
	Phrase  string
	Timeout bool // the context ended first (we sent CANCEL)
	Err     error
}

func (e *dialError) Error() string {
	switch {
	case e.Timeout:
		return fmt.Sprintf("not answered in time (CANCEL; final status %d)", e.Status)
	case e.Status != 0:
		return fmt.Sprintf("%d %s", e.Status, e.Phrase)
	}
	return e.Err.Error()
}

func (e *dialError) Unwrap() error { return e.Err }

// trunkHost is where the trunk takes calls: its URI's host:port, else o.dest.
func (o *dialOptions) trunkHost() string {
	if o.trunk.hasURI {
		return o.trunk.uri.HostPort()
	}
	return o.dest
}

// requestURI is the INVITE's Request-URI: a sip: URI as given, an E.164
// number at the trunk.
func (o *dialOptions) requestURI() string {
	if l := strings.ToLower(o.target); strings.HasPrefix(l, "sip:") || strings.HasPrefix(l, "sips:") {
		return o.target
	}
	if o.trunk.hasURI && o.trunk.uri.Transport != "udp" {
		return "sip:" + o.target + "@" + o.trunkHost() + ";transport=" + o.trunk.uri.Transport
	}
	return "sip:" + o.target + "@" + o.trunkHost()
}

// dial places an outbound call and waits for its answer. On success the leg's
// dialog is up (ACKed) and registered for in-dialog requests; its stream is
// not started. On failure everything is undone and the error is a *dialError
// when the trunk answered or the context ended.
func (s *Server) dial(ctx context.Context, o dialOptions) (*outLeg, sdp.Negotiated, error) {
	ctx = withTrunk(ctx, o.trunk) // a TLS trunk gets its client certificate
	var neg sdp.Negotiated
	// The callee answers through the trunk: its media comes from the trunk's
	// networks, from the address its SDP answer names.
	stream, err := media.NewStream(s.opt.Ports, s.mediaIP, media.Options{Logger: o.log, Wheel: s.opt.Wheel,
		JitterMin: s.opt.JitterMin, JitterMax: s.opt.JitterMax, Concealment: s.opt.Concealment,
		Sources: s.rtpSources(o.trunk, netip.Addr{})})
	if err != nil {
		return nil, neg, err
	}
	leg := &outLeg{s: s, stream: stream, onBye: o.onBye}
	ok := false
	defer func() {
		if !ok {
			stream.Close()
		}
	}()
	local := sdp.NewLocal(o.advertise, stream.LocalPort())
	// The trunk's SRTP policy holds for the legs we place through it too; the
	// codecs are G.711, what every callee takes.
	local.Policy = sdp.Policy{SRTP: mediaPolicy(o.trunk.Trunk).SRTP}
	host := o.advertise.String()
	if o.advertise.Is6() {
		host = "[" + host + "]"
	}
	port := s.port
	contact := gsip.ContactHeader{Address: gsip.Uri{Scheme: "sip", User: "cxco", Host: host, Port: port}}
	transport := o.transport
	if o.trunk.hasURI {
		transport = o.trunk.uri.Transport
	}
	if strings.EqualFold(transport, "tls") && s.tlsPort != 0 {
		port = s.tlsPort
		contact.Address.Port = port
		contact.Address.UriParams = gsip.NewParams()
		contact.Address.UriParams.Add("transport", "tls")
	}
	cli, err := sipgo.NewClient(s.ua, sipgo.WithClientHostname(o.advertise.String()), sipgo.WithClientPort(port))
	if err != nil {
		return nil, neg, err
	}
	dua := &sipgo.DialogUA{Client: cli, ContactHDR: contact}
	var ruri gsip.Uri
	if err := gsip.ParseUri(o.requestURI(), &ruri); err != nil {
		return nil, neg, fmt.Errorf("bad destination %q: %w", o.target, err)
	}
	inv := gsip.NewRequest(gsip.INVITE, ruri)
	inv.SetTransport(strings.ToUpper(transport))
	inv.SetDestination(o.trunkHost())
	s.fromListener(inv, o.advertise) // and its ACK and CANCEL
	from := &gsip.FromHeader{Address: gsip.Uri{Scheme: "sip", User: o.fromUser, Host: host}}
	if o.hideID {
		from = &gsip.FromHeader{DisplayName: "Anonymous", Address: gsip.Uri{Scheme: "sip", User: "anonymous", Host: "anonymous.invalid"}}
	}
	from.Params = gsip.NewParams()
	from.Params.Add("tag", gsip.GenerateTagN(16))
	inv.AppendHeader(from)
	inv.AppendHeader(&gsip.ToHeader{Address: ruri})
	if o.assertID && o.fromUser != "" {
		inv.AppendHeader(gsip.NewHeader("P-Asserted-Identity", fmt.Sprintf("<sip:%s@%s>", o.fromUser, host)))
	}
	if o.hideID {
		inv.AppendHeader(gsip.NewHeader("Privacy", "id"))
	}
	for _, h := range o.headers {
		inv.AppendHeader(h)
	}
	callID := o.callID
	if callID == "" {
		callID = gsip.GenerateTagN(24) + "@" + o.advertise.String()
	}
	cid := gsip.CallIDHeader(callID)
	inv.AppendHeader(&cid)
	inv.AppendHeader(gsip.NewHeader("Allow", allowMethods))
	ct := gsip.ContentTypeHeader("application/sdp")
	inv.AppendHeader(&ct)
	inv.SetBody(local.Offer(sdp.SendRecv))
	if o.pace != nil {
		if err := o.pace(ctx); err != nil {
			return nil, neg, &dialError{Timeout: ctx.Err() != nil, Err: fmt.Errorf("waiting for the INVITE's turn: %w", err)}
		}
	}
	sess, err := dua.WriteInvite(ctx, inv)
	if err != nil {
		return nil, neg, fmt.Errorf("INVITE: %w", err)
	}
	leg.sess = sess
	var answeredAt time.Time
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: o.trunk.Username, Password: o.trunk.password,
		OnResponse: func(res *gsip.Response) error {
			now := time.Now()
			if res.IsSuccess() {
				answeredAt = now
			}
			if o.onResponse != nil {
				o.onResponse(res, now)
			}
			return nil
		}})
	if err != nil {
		de := &dialError{Err: err}
		var re *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &re):
			de.Status, de.Phrase = re.Res.StatusCode, re.Res.Reason
		case ctx.Err() != nil:
			de.Timeout = true
			if r := sess.InviteResponse; r != nil && r.StatusCode >= 300 {
				de.Status, de.Phrase = r.StatusCode, r.Reason
			}
		}
		sess.Close()
		return nil, neg, de
	}
	if answeredAt.IsZero() {
		answeredAt = time.Now()
	}
	// From here the dialog is up: every failure hangs it up.
	bctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	neg, err = local.ParseAnswer(sess.InviteResponse.Body())
	if err != nil {
		_ = sess.Ack(bctx)
		_ = byeFromListener(bctx, sess)
		return nil, neg, fmt.Errorf("the callee's SDP: %w", err)
	}
	if err := sess.Ack(bctx); err != nil {
		return nil, neg, fmt.Errorf("ACK: %w", err)
	}
	// The callee's BYE reaches us by dialog id (their To-tag is their tag).
	fromTag, _ := sess.InviteRequest.From().Params.Get("tag")
	toTag, _ := sess.InviteResponse.To().Params.Get("tag")
	leg.id = dialogID(sess.InviteRequest.CallID().Value(), fromTag, toTag)
	leg.start = answeredAt
	s.mu.Lock()
	s.legs[leg.id] = leg
	s.mu.Unlock()
	ok = true
	return leg, neg, nil
}

// byeFromListener is sess.Bye from the socket its INVITE left from: sipgo's
// own BYE does not keep the INVITE's Laddr. The recipient is the callee's
// Contact, as sipgo's; the dialog fills in the rest (From, To, Call-ID, CSeq,
// route set, Via).
func byeFromListener(ctx context.Context, sess *sipgo.DialogClientSession) error {
	if sess.InviteResponse == nil {
		return sess.Bye(ctx) // its error
	}
	to := sess.InviteRequest.Recipient
	if c := sess.InviteResponse.Contact(); c != nil {
		to = c.Address
	}
	bye := gsip.NewRequest(gsip.BYE, *to.Clone())
	bye.SetTransport(sess.InviteRequest.Transport())
	bye.Laddr = sess.InviteRequest.Laddr
	return sess.WriteBye(ctx, bye)
}

// outLeg is an outbound call's dialog (callpath.Leg): the far leg of a bridged
// transfer, or an outbound call's only leg.
type outLeg struct {
	s      *Server
	sess   *sipgo.DialogClientSession
	stream *media.Stream
	id     string
	start  time.Time // answered
	onBye  func()

	farBye  atomic.Bool
	closeMu sync.Once
}

func (s *Server) lookupLeg(req *gsip.Request) *outLeg {
	id, ok := inDialogID(req)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.legs[id]
}

// Stream implements callpath.Leg.
func (l *outLeg) Stream() *media.Stream { return l.stream }

// Check implements callpath.Leg: the far end's RTP stopping ends the call.
func (l *outLeg) Check(now time.Time) (callpath.End, bool) {
	last := l.stream.LastReceived()
	if last.Before(l.start) {
		last = l.start
	}
	if now.Sub(last) > l.s.opt.RTPTimeout {
		return callpath.End{Reason: callpath.RTPTimeout}, true
	}
	return callpath.End{}, false
}

// onByeIn: the far end hung up.
func (l *outLeg) onByeIn(req *gsip.Request, tx gsip.ServerTransaction) {
	l.farBye.Store(true)
	_ = l.sess.ReadBye(req, tx)
	if l.onBye != nil {
		l.onBye()
	}
}

// Hangup implements callpath.Leg: it ends the leg (BYE unless the far end hung
// up) and its media.
func (l *outLeg) Hangup(ctx context.Context, _ callpath.End) {
	l.closeMu.Do(func() {
		if !l.farBye.Load() {
			_ = byeFromListener(ctx, l.sess)
		}
		l.stream.Close()
		l.s.mu.Lock()
		delete(l.s.legs, l.id)
		l.s.mu.Unlock()
		l.sess.Close()
	})
}
