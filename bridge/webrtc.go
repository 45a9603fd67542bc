package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	psdp "github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/store"
)

// TestCallOptions configure TestCalls.
type TestCallOptions struct {
	// Connector opens the provider session of each call (the bridge's Connector,
	// exactly as for phone calls).
	Connector callpath.Connector
	// Calls records each call's conversation (callstore).
	Calls Calls
	Wheel *clock.Wheel // the media engine's clock wheel
	// JitterMin/JitterMax and Concealment configure every call's jitter buffer
	// (as --jitter-min/max and --plc).
	JitterMin, JitterMax time.Duration
	Concealment          jitter.Concealment
	// PublicIP is the address our ICE candidates carry (--public-ip). A loopback
	// address keeps ICE on loopback (tests, one machine); an address of this
	// machine restricts ICE to it; any other address is taken as a 1:1 NAT in
	// front of this machine: candidates on its non-loopback addresses are
	// announced with PublicIP instead.
	PublicIP netip.Addr
	// PortMin/PortMax bound the UDP ports ICE listens on (the --rtp-ports range,
	// so one firewall rule covers phone and browser calls); 0: any port.
	PortMin, PortMax uint16
	// MaxCalls bounds the test calls at once (default 100); more get 503.
	MaxCalls int
	// ConnectTimeout is how long the browser has, from our answer, to connect
	// (ICE and DTLS) before the call ends as failed (default 15 s).
	ConnectTimeout time.Duration
	// RTPTimeout ends a connected call after this long without RTP (default 30 s).
	RTPTimeout time.Duration
	Logger     *slog.Logger
	// OnRecorded is told each call whose end has been handed to the store (the
	// spool, when it has one), whatever ended it: metrics and tests wait on it.
	OnRecorded func(conversationID int64)
}

// TestCalls places the dashboard's "talk to this agent" calls: a browser's WebRTC
// offer becomes a call with the agent that runs through the same media engine
// (jitter buffer, codec chain, pacer) and bridge (provider websocket, transcript,
// usage) as a phone call, recorded as a voice conversation from caller "webrtc".
// It implements control.TestCaller.
//
// Goroutines: one supervisor per call (see webrtcCall); Close ends every call and
// waits for them.
type TestCalls struct {
	opt TestCallOptions
	log *slog.Logger
	api *webrtc.API

	mu      sync.Mutex
	calls   map[int64]*webrtcCall // by id (the conversation id)
	setup   int                   // calls being set up or up
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// CallerWebRTC is the caller_number of test calls.
const CallerWebRTC = callpath.CallerWebRTC

// Calls records the conversations of test calls (callstore implements it).
type Calls interface {
	Started(ctx context.Context, s callpath.Start) (callpath.Record, error)
}

// TestCallError is why a test call could not start, with the HTTP status that says
// so (control maps it through its HTTPStatus method).
type TestCallError struct {
	Status int
	Detail string
	Err    error
}

func (e *TestCallError) Error() string {
	if e.Err != nil {
		return e.Detail + ": " + e.Err.Error()
	}
	return e.Detail
}

func (e *TestCallError) Unwrap() error { return e.Err }

// HTTPStatus is the status the control plane answers with.
func (e *TestCallError) HTTPStatus() int { return e.Status }

// ErrBadOffer is wrapped by the errors of offers a test call cannot answer.
var ErrBadOffer = errors.New("bridge: unusable WebRTC offer")

func badOffer(format string, args ...any) error {
	return &TestCallError{Status: http.StatusUnprocessableEntity, Detail: fmt.Sprintf(format, args...), Err: ErrBadOffer}
}

func unavailable(detail string, err error) error {
	return &TestCallError{Status: http.StatusServiceUnavailable, Detail: detail, Err: err}
}

// NewTestCalls prepares the WebRTC engine: PCMU only, RTCP reports by pion, ICE
// over UDP on the configured address.
func NewTestCalls(o TestCallOptions) (*TestCalls, error) {
	if o.Calls == nil || o.Wheel == nil || o.Connector == nil {
		return nil, errors.New("bridge: TestCallOptions needs Calls, Wheel and Connector")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxCalls <= 0 {
		o.MaxCalls = 100
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 15 * time.Second
	}
	if o.RTPTimeout <= 0 {
		o.RTPTimeout = 30 * time.Second
	}
	if !o.PublicIP.IsValid() {
		o.PublicIP = netip.MustParseAddr("127.0.0.1")
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000},
		PayloadType:        0,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, err
	}
	se, err := iceSettings(o.PublicIP, localAddrs(), o.PortMin, o.PortMax, o.Logger)
	if err != nil {
		return nil, err
	}
	tc := &TestCalls{opt: o, log: o.Logger, calls: map[int64]*webrtcCall{}, closing: make(chan struct{})}
	tc.api = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return tc, nil
}

// checkOffer accepts an SDP offer with an audio section that offers PCMU.
func checkOffer(offer string) error {
	if strings.TrimSpace(offer) == "" {
		return badOffer("sdp: field required (the browser's SDP offer)")
	}
	var sd psdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return badOffer("sdp: not a valid SDP offer (%v)", err)
	}
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			_, enc, _ := strings.Cut(a.Value, " ")
			if strings.HasPrefix(strings.ToUpper(enc), "PCMU/8000") {
				return nil
			}
		}
		for _, f := range m.MediaName.Formats {
			if f == "0" { // static payload type 0 without an rtpmap
				return nil
			}
		}
	}
	return badOffer("sdp: the offer has no PCMU audio; the test call speaks G.711 µ-law (PCMU), as phone calls do")
}

// StartTestCall places a test call with agent a of company co: it records the
// conversation, connects the provider, answers the offer (ICE gathered, no
// trickle) and hands the call to its supervisor, which starts the media once the
// browser connects. It returns the call's id (the conversation's) and the SDP
// answer.
func (tc *TestCalls) StartTestCall(ctx context.Context, co *store.Company, a *store.Agent, offer string) (int64, string, error) {
	if err := checkOffer(offer); err != nil {
		return 0, "", err
	}
	tc.mu.Lock()
	switch {
	case tc.closed:
		tc.mu.Unlock()
		return 0, "", unavailable("the gateway is shutting down", nil)
	case tc.setup >= tc.opt.MaxCalls:
		tc.mu.Unlock()
		return 0, "", unavailable(fmt.Sprintf("too many test calls at once (%d); try again shortly", tc.opt.MaxCalls), nil)
	}
	tc.setup++
	tc.wg.Add(1)
	tc.mu.Unlock()
	c, answer, err := tc.setupCall(ctx, co, a, offer)
	if err != nil {
		tc.release()
		return 0, "", err
	}
	go c.run()
	return c.id, answer, nil
}

// forget takes a call that is over (recorded) out of the ones EndTestCall can
// find and out of Calls, before anyone is told it is recorded; its goroutine's
// last steps are waited for by Close (done).
func (tc *TestCalls) forget(c *webrtcCall) {
	tc.mu.Lock()
	delete(tc.calls, c.id)
	tc.setup--
	tc.mu.Unlock()
}

// done is a forgotten call's goroutine ending.
func (tc *TestCalls) done() { tc.wg.Done() }

// release gives back a call's place once it is over, or failed to start.
func (tc *TestCalls) release() {
	tc.mu.Lock()
	tc.setup--
	tc.mu.Unlock()
	tc.wg.Done()
}

// EndTestCall hangs up a call of the company (the browser's hang-up button) and
// waits until its conversation is recorded, or ctx ends. An unknown or finished
// call is store.ErrNotFound.
func (tc *TestCalls) EndTestCall(ctx context.Context, companyID, id int64) error {
	tc.mu.Lock()
	c := tc.calls[id]
	tc.mu.Unlock()
	if c == nil || c.conv.CompanyID != companyID {
		return fmt.Errorf("%w: test call %d", store.ErrNotFound, id)
	}
	c.cp.End(callpath.End{Reason: callpath.CallerHangup})
	select {
	case <-c.recorded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Calls is how many test calls are being set up or are up.
func (tc *TestCalls) Calls() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.setup
}

// Close ends every test call (end reason shutdown), waits until each is recorded,
// and refuses new ones.
func (tc *TestCalls) Close() {
	tc.mu.Lock()
	if !tc.closed {
		tc.closed = true
		close(tc.closing)
	}
	tc.mu.Unlock()
	tc.wg.Wait()
}

// streamOptions are a call's media options, as for phone calls.
func (tc *TestCalls) streamOptions(log *slog.Logger) media.Options {
	return media.Options{Logger: log, Wheel: tc.opt.Wheel, JitterMin: tc.opt.JitterMin, JitterMax: tc.opt.JitterMax,
		Concealment: tc.opt.Concealment}
}
