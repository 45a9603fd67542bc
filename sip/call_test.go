package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gsip "github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/store"
)

// Unit tests of the dialog and the call's state, without SIP sockets: requests
// go straight to the handlers in sipgo's server-transaction recorders, and the
// requests we send (BYE, REFER) go to a recording requester that answers them
// as the trunk would. Routing, records and the agent are fakes; RTP is real on
// loopback.

type fakeRecord struct {
	conv     *store.Conversation
	mu       sync.Mutex
	answered time.Time
	ended    chan callpath.End
}

func (r *fakeRecord) Conversation() *store.Conversation { c := *r.conv; return &c }
func (r *fakeRecord) Answered(_ context.Context, at time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answered = at
	return nil
}
func (r *fakeRecord) Entry(store.Role, string, float64)                           {}
func (r *fakeRecord) CorrectAgent(string, float64)                                {}
func (r *fakeRecord) Served(string, string)                                       {}
func (r *fakeRecord) Metadata(map[string]any)                                     {}
func (r *fakeRecord) Transcript(context.Context) ([]store.TranscriptEntry, error) { return nil, nil }
func (r *fakeRecord) Ended(e callpath.End, _ media.Stats)                         { r.ended <- e }
func (r *fakeRecord) Analysed(context.Context, *string, *bool, map[string]any) error {
	return nil
}

type fakeCalls struct {
	route   func(number string) (callpath.Route, error)
	records chan *fakeRecord
}

func (f *fakeCalls) Route(_ context.Context, number string) (callpath.Route, error) {
	return f.route(number)
}
func (f *fakeCalls) Started(_ context.Context, s callpath.Start) (callpath.Record, error) {
	r := &fakeRecord{conv: &store.Conversation{ID: 7, CompanyID: s.Company.ID, AgentID: s.Agent.ID}, ended: make(chan callpath.End, 1)}
	f.records <- r
	return r, nil
}

// fakePeer is the agent.
type fakePeer struct {
	lines  chan callpath.Line
	digits chan rune
	done   chan struct{}
	end    callpath.End
	closed chan callpath.Reason
}

func newFakePeer() *fakePeer {
	return &fakePeer{lines: make(chan callpath.Line, 1), digits: make(chan rune, 8), done: make(chan struct{}), closed: make(chan callpath.Reason, 1)}
}
func (p *fakePeer) Format() media.Format        { return media.FormatULaw8k }
func (p *fakePeer) Start(l callpath.Line) error { p.lines <- l; return nil }
func (p *fakePeer) OnAudio(media.Frame)         {}
func (p *fakePeer) OnDigit(d media.Digit)       { p.digits <- d.Digit }
func (p *fakePeer) Done() <-chan struct{}       { return p.done }
func (p *fakePeer) End() callpath.End           { return p.end }
func (p *fakePeer) Close(r callpath.Reason)     { p.closed <- r }
func (p *fakePeer) hangup(e callpath.End)       { p.end = e; close(p.done) }
func (p *fakePeer) line(t *testing.T) callpath.Line {
	t.Helper()
	return recv(t, p.lines, "the agent's start")
}

type connectFunc func(ctx context.Context, info *callpath.Info) (callpath.Peer, error)

func (f connectFunc) Connect(ctx context.Context, info *callpath.Info) (callpath.Peer, error) {
	return f(ctx, info)
}

// uas is a Server with no sockets of its own.
type uas struct {
	t     *testing.T
	s     *Server
	calls *fakeCalls
	peer  *fakePeer
	// sent gets every request the server sends; answer says what the trunk answers.
	sent   chan *gsip.Request
	answer func(*gsip.Request) *gsip.Response
	cseq   uint32
}

var (
	testCompany = &store.Company{ID: 3, Name: "Acme", Status: store.CompanyActive}
	testAgent   = &store.Agent{ID: 5, CompanyID: 3, Name: "Ava", Status: store.AgentActive, Config: map[string]any{}}
)

func newUAS(t *testing.T, opt Options) *uas {
	t.Helper()
	u := &uas{t: t, peer: newFakePeer(), sent: make(chan *gsip.Request, 16), cseq: 1,
		answer: func(req *gsip.Request) *gsip.Response { return gsip.NewResponseFromRequest(req, 200, "OK", nil) }}
	u.calls = &fakeCalls{records: make(chan *fakeRecord, 4), route: func(string) (callpath.Route, error) {
		return callpath.Route{Company: testCompany, Agent: testAgent}, nil
	}}
	pool, err := media.NewPortPool(30000+2*int(time.Now().UnixNano()%4000), 39999)
	if err != nil {
		t.Fatal(err)
	}
	wheel := clock.New(clock.Options{})
	wheel.Start()
	t.Cleanup(wheel.Stop)
	if opt.Calls == nil {
		opt.Calls = u.calls
	}
	if opt.Connector == nil {
		opt.Connector = connectFunc(func(context.Context, *callpath.Info) (callpath.Peer, error) { return u.peer, nil })
	}
	opt.Ports, opt.Wheel, opt.PublicIP = pool, wheel, netip.MustParseAddr("127.0.0.1")
	opt.DefaultTrunk = store.Trunk{Name: "default", Allow: []string{"127.0.0.0/8"}}
	opt.Logger = testLog(t)
	if u.s, err = New(opt); err != nil {
		t.Fatal(err)
	}
	u.s.setupUA()
	u.s.cli.TxRequester = &siptest.ClientTxRequester{OnRequest: func(req *gsip.Request) *gsip.Response {
		u.sent <- req.Clone()
		return u.answer(req)
	}}
	t.Cleanup(func() { _ = u.s.Close() })
	return u
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("CXCO_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// response waits for tx's response with code.
func response(t *testing.T, tx *siptest.ServerTxRecorder, code int) *gsip.Response {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, r := range tx.Result() {
			if r.StatusCode == code {
				return r
			}
			if r.StatusCode >= 200 && r.StatusCode != code {
				t.Fatalf("got %d %s, want %d", r.StatusCode, r.Reason, code)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d (got %d responses)", code, len(tx.Result()))
		}
		time.Sleep(5 * time.Millisecond) // polling a recorder, not synchronising
	}
}

func offer(port int, extra string) string {
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		fmt.Sprintf("m=audio %d RTP/AVP 0 101\r\n", port) +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" + extra
}

// request builds a request from the trunk (127.0.0.1:5099) in the call's
// dialog once toTag is known.
func (u *uas) request(method, number, toTag, body string, extra ...string) *gsip.Request {
	u.t.Helper()
	return u.requestOf(method, number, toTag, "application/sdp", body, extra...)
}

func (u *uas) requestOf(method, number, toTag, ctype, body string, extra ...string) *gsip.Request {
	u.t.Helper()
	hdr := ""
	if toTag != "" {
		hdr = ";tag=" + toTag
	}
	if method != "ACK" && method != "CANCEL" {
		u.cseq++
	}
	raw := fmt.Sprintf("%s sip:%s@127.0.0.1:5060 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK%s%d\r\n"+
		"From: <sip:+27821234567@127.0.0.1>;tag=trunk1\r\n"+
		"To: <sip:%s@127.0.0.1>%s\r\n"+
		"Call-ID: unit-call@127.0.0.1\r\nCSeq: %d %s\r\nContact: <sip:trunk@127.0.0.1:5099>\r\nMax-Forwards: 70\r\n",
		method, number, strings.ToLower(method), u.cseq, number, hdr, u.cseq, method)
	for _, e := range extra {
		raw += e + "\r\n"
	}
	if body != "" {
		raw += "Content-Type: " + ctype + "\r\n"
	}
	raw += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	m, err := gsip.ParseMessage([]byte(raw))
	if err != nil {
		u.t.Fatalf("parse %s: %v", method, err)
	}
	req := m.(*gsip.Request)
	req.SetSource("127.0.0.1:5099")
	req.SetTransport("UDP")
	return req
}

// call is an answered and acknowledged call.
type unitCall struct {
	u      *uas
	number string
	tag    string // our To-tag
	ok     *gsip.Response
	rec    *fakeRecord
	line   callpath.Line
}

func (u *uas) invite(number, body string, extra ...string) (*gsip.Request, *siptest.ServerTxRecorder) {
	req := u.request("INVITE", number, "", body, extra...)
	tx := siptest.NewServerTxRecorder(req)
	go u.s.guard(u.s.onInvite)(req, tx)
	return req, tx
}

func (u *uas) answered(number string) *unitCall {
	u.t.Helper()
	_, tx := u.invite(number, offer(40000, ""))
	ok := response(u.t, tx, 200)
	tag, _ := ok.To().Params.Get("tag")
	c := &unitCall{u: u, number: number, tag: tag, ok: ok}
	c.rec = recv(u.t, u.calls.records, "the record")
	c.line = u.peer.line(u.t)
	ack := u.request("ACK", number, tag, "")
	ack.CSeq().SeqNo = 2 // the INVITE's
	u.s.onAck(ack, nil)
	return c
}

func (c *unitCall) inDialog(method, body string, extra ...string) *siptest.ServerTxRecorder {
	req := c.u.request(method, c.number, c.tag, body, extra...)
	tx := siptest.NewServerTxRecorder(req)
	handler := map[string]func(*gsip.Request, gsip.ServerTransaction){"BYE": c.u.s.onBye, "INFO": c.u.s.onInfo,
		"UPDATE": c.u.s.onUpdate, "NOTIFY": c.u.s.onNotify, "INVITE": c.u.s.onInvite}[method]
	go c.u.s.guard(handler)(req, tx)
	return tx
}

func (c *unitCall) ended() callpath.End {
	c.u.t.Helper()
	return recv(c.u.t, c.rec.ended, "the end of the call")
}

// TestInboundCall: INVITE to answer (100, 180, 200 with our SDP answer and
// Contact), the ACK records the answer, the agent starts; SIP INFO DTMF reaches
// it, a re-INVITE on hold is answered recvonly, a request out of CSeq order is
// refused, and the caller's BYE ends the call as completed without a BYE of ours.
func TestInboundCall(t *testing.T) {
	u := newUAS(t, Options{})
	_, tx := u.invite("+27211234567", offer(40000, ""))
	ok := response(t, tx, 200)
	codes := []int{}
	for _, r := range tx.Result() {
		codes = append(codes, r.StatusCode)
	}
	if fmt.Sprint(codes[:3]) != "[100 180 200]" {
		t.Fatalf("responses %v, want 100, 180, 200", codes)
	}
	body := string(ok.Body())
	if !strings.Contains(body, "m=audio ") || !strings.Contains(body, "PCMU/8000") || !strings.Contains(body, "c=IN IP4 127.0.0.1") {
		t.Fatalf("SDP answer:\n%s", body)
	}
	if ct := ok.Contact(); ct == nil || ct.Address.Host != "127.0.0.1" || ok.GetHeader("Allow") == nil {
		t.Fatalf("200 without our Contact or Allow: %s", ok)
	}
	tag, _ := ok.To().Params.Get("tag")
	c := &unitCall{u: u, number: "+27211234567", tag: tag, ok: ok, rec: recv(t, u.calls.records, "the record"), line: u.peer.line(t)}
	ack := u.request("ACK", c.number, tag, "")
	ack.CSeq().SeqNo = 2
	u.s.onAck(ack, nil)
	c.rec.mu.Lock()
	at := c.rec.answered
	c.rec.mu.Unlock()
	if at.IsZero() || !c.line.AnsweredAt().Equal(at) {
		t.Fatalf("answer recorded at %v, the line says %v", at, c.line.AnsweredAt())
	}

	req := u.requestOf("INFO", c.number, tag, "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")
	itx := siptest.NewServerTxRecorder(req)
	u.s.guard(u.s.onInfo)(req, itx)
	response(t, itx, 200)
	if d := recv(t, u.peer.digits, "the INFO digit"); d != '5' {
		t.Fatalf("digit %q, want 5", d)
	}

	hold := c.inDialog("INVITE", offer(40000, "a=sendonly\r\n"))
	res := response(t, hold, 200)
	if !strings.Contains(string(res.Body()), "a=recvonly") {
		t.Fatalf("hold answered with:\n%s", res.Body())
	}
	hack := u.request("ACK", c.number, tag, "")
	hack.CSeq().SeqNo = u.cseq
	u.s.onAck(hack, nil)

	u.cseq -= 3 // a request from the past
	old := c.inDialog("UPDATE", "")
	response(t, old, 500)
	u.cseq += 3

	bye := c.inDialog("BYE", "")
	response(t, bye, 200)
	e := c.ended()
	if e.Reason != callpath.CallerHangup || e.Outcome != callpath.OutcomeCompleted || e.AnsweredAt.IsZero() {
		t.Fatalf("end: %+v", e)
	}
	if r := recv(t, u.peer.closed, "the agent's close"); r != callpath.CallerHangup {
		t.Fatalf("agent closed with %q", r)
	}
	select {
	case req := <-u.sent:
		t.Fatalf("we sent %s after the caller's BYE", req.Method)
	default:
	}
}

// TestAgentEndsCall: when the agent ends the call, our BYE goes to the caller's
// Contact within the dialog (their tag in To, ours in From, the next CSeq of ours).
func TestAgentEndsCall(t *testing.T) {
	u := newUAS(t, Options{})
	c := u.answered("+27211234567")
	u.peer.hangup(callpath.End{Reason: callpath.AgentHangup})
	bye := recv(t, u.sent, "our BYE")
	from, _ := bye.From().Params.Get("tag")
	to, _ := bye.To().Params.Get("tag")
	if bye.Method != gsip.BYE || bye.Recipient.User != "trunk" || from != c.tag || to != "trunk1" || bye.CSeq().SeqNo != 2 ||
		bye.CallID().Value() != "unit-call@127.0.0.1" {
		t.Fatalf("BYE:\n%s", bye)
	}
	if e := c.ended(); e.Reason != callpath.AgentHangup || e.Outcome != callpath.OutcomeCompleted {
		t.Fatalf("end: %+v", e)
	}
}

// TestRefusals: every way an INVITE is refused answers the right status with a
// Reason header, and a call refused after it was recorded ends as failed.
func TestRefusals(t *testing.T) {
	notFound := func(string) (callpath.Route, error) {
		return callpath.Route{}, callpath.Refuse(404, "Not Found", callpath.UnknownNumber, nil)
	}
	paused := func(string) (callpath.Route, error) {
		return callpath.Route{}, callpath.Refuse(480, "Temporarily Unavailable", callpath.AgentPaused, nil)
	}
	down := connectFunc(func(context.Context, *callpath.Info) (callpath.Peer, error) {
		return nil, errors.New("websocket: connection refused")
	})
	notProvisioned := connectFunc(func(context.Context, *callpath.Info) (callpath.Peer, error) {
		return nil, callpath.Refuse(480, "Temporarily Unavailable", callpath.AgentNotProvisioned, nil)
	})
	for _, tc := range []struct {
		name       string
		route      func(string) (callpath.Route, error)
		connector  callpath.Connector
		body       string
		code       int
		reason     callpath.Reason
		retryAfter string
		recorded   bool
	}{
		{name: "unknown number", route: notFound, code: 404, reason: callpath.UnknownNumber},
		{name: "paused agent", route: paused, code: 480, reason: callpath.AgentPaused},
		{name: "provider down", connector: down, code: 503, reason: callpath.ProviderDown, retryAfter: "5", recorded: true},
		{name: "agent not at its provider", connector: notProvisioned, code: 480, reason: callpath.AgentNotProvisioned, recorded: true},
		{name: "no common codec", body: strings.Replace(offer(40000, ""), "RTP/AVP 0 101", "RTP/AVP 18", 1), code: 488},
		{name: "malformed SDP", body: "v=0\r\nnot sdp\r\n", code: 400, reason: callpath.BadSDP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUAS(t, Options{Connector: tc.connector})
			if tc.route != nil {
				u.calls.route = tc.route
			}
			body := tc.body
			if body == "" {
				body = offer(40000, "")
			}
			_, tx := u.invite("+27211234567", body)
			res := response(t, tx, tc.code)
			if tc.reason != "" {
				if h := res.GetHeader("Reason"); h == nil || !strings.Contains(h.Value(), string(tc.reason)) {
					t.Fatalf("Reason header: %v", h)
				}
			}
			if h := res.GetHeader("Retry-After"); tc.retryAfter != "" && (h == nil || h.Value() != tc.retryAfter) {
				t.Fatalf("Retry-After: %v", h)
			}
			if tc.recorded {
				r := recv(t, u.calls.records, "the record")
				if e := recv(t, r.ended, "the record's end"); e.Reason != tc.reason || e.Outcome != callpath.OutcomeFailed {
					t.Fatalf("recorded end %+v", e)
				}
			}
		})
	}
}

// TestDraining: a draining server refuses new calls with 503 and Retry-After.
func TestDraining(t *testing.T) {
	u := newUAS(t, Options{})
	u.s.Drain()
	_, tx := u.invite("+27211234567", offer(40000, ""))
	if h := response(t, tx, 503).GetHeader("Retry-After"); h == nil || h.Value() != "30" {
		t.Fatalf("Retry-After %v", h)
	}
}

// TestCancelBeforeAnswer: a CANCEL while the agent connects answers the INVITE
// 487 and records the call as cancelled.
func TestCancelBeforeAnswer(t *testing.T) {
	connecting := make(chan struct{})
	u := newUAS(t, Options{Connector: connectFunc(func(ctx context.Context, _ *callpath.Info) (callpath.Peer, error) {
		close(connecting)
		<-ctx.Done()
		return nil, ctx.Err()
	})})
	inv, tx := u.invite("+27211234567", offer(40000, ""))
	recv(t, connecting, "the connect")
	cancel := inv.Clone()
	cancel.Method = gsip.CANCEL
	cancel.CSeq().MethodName = gsip.CANCEL
	cancel.SetBody(nil)
	if err := tx.Receive(cancel); err != nil {
		t.Fatal(err)
	}
	response(t, tx, 487)
	r := recv(t, u.calls.records, "the record")
	if e := recv(t, r.ended, "the record's end"); e.Reason != callpath.Cancelled || e.Outcome != callpath.OutcomeCancelled {
		t.Fatalf("recorded end %+v", e)
	}
}

// TestReferTransfer: the agent's transfer sends REFER to the trunk; the
// NOTIFY with a 200 sipfrag ends the call as transferred with our BYE. A trunk
// that refuses the REFER leaves the call going on.
func TestReferTransfer(t *testing.T) {
	u := newUAS(t, Options{})
	refuse := true
	u.answer = func(req *gsip.Request) *gsip.Response {
		if req.Method == gsip.REFER && refuse {
			return gsip.NewResponseFromRequest(req, 603, "Decline", nil)
		}
		if req.Method == gsip.REFER {
			return gsip.NewResponseFromRequest(req, 202, "Accepted", nil)
		}
		return gsip.NewResponseFromRequest(req, 200, "OK", nil)
	}
	c := u.answered("+27211234567")
	err := c.line.Transfer(context.Background(), "+27215550100", false)
	if !errors.Is(err, ErrTransferRejected) {
		t.Fatalf("refused REFER: %v", err)
	}
	refer := recv(t, u.sent, "the first REFER")
	if h := refer.GetHeader("Refer-To"); h == nil || !strings.Contains(h.Value(), "sip:+27215550100@127.0.0.1:5099") {
		t.Fatalf("Refer-To: %v", h)
	}
	refuse = false
	done := make(chan error, 1)
	go func() { done <- c.line.Transfer(context.Background(), "+27215550100", false) }()
	recv(t, u.sent, "the second REFER")
	notify := c.u.requestOf("NOTIFY", c.number, c.tag, "message/sipfrag", "SIP/2.0 200 OK\r\n", "Event: refer")
	ntx := siptest.NewServerTxRecorder(notify)
	u.s.guard(u.s.onNotify)(notify, ntx)
	response(t, ntx, 200)
	if err := recv(t, done, "the transfer"); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if bye := recv(t, u.sent, "our BYE"); bye.Method != gsip.BYE {
		t.Fatalf("sent %s, want BYE", bye.Method)
	}
	e := c.ended()
	if e.Reason != callpath.Transferred || e.Outcome != callpath.OutcomeTransferred || e.ReferTo != "+27215550100" {
		t.Fatalf("end: %+v", e)
	}
}

// TestMaxDuration: the agent's max_call_duration_seconds ends the call with
// our BYE.
func TestMaxDuration(t *testing.T) {
	u := newUAS(t, Options{})
	short := *testAgent
	short.Config = map[string]any{"max_call_duration_seconds": float64(1)}
	u.calls.route = func(string) (callpath.Route, error) { return callpath.Route{Company: testCompany, Agent: &short}, nil }
	c := u.answered("+27211234567")
	if bye := recv(t, u.sent, "our BYE"); bye.Method != gsip.BYE {
		t.Fatalf("sent %s", bye.Method)
	}
	if e := c.ended(); e.Reason != callpath.MaxDuration {
		t.Fatalf("end: %+v", e)
	}
}

// TestUnknownDialog: requests for a dialog we do not have get 481.
func TestUnknownDialog(t *testing.T) {
	u := newUAS(t, Options{})
	c := &unitCall{u: u, number: "+27211234567", tag: "nosuchtag"}
	for _, m := range []string{"BYE", "INFO", "UPDATE", "NOTIFY"} {
		response(t, c.inDialog(m, ""), 481)
	}
}
