package callpath

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
)

// order records what the supervisor did, in order.
type order struct {
	mu    sync.Mutex
	steps []string
}

func (o *order) add(s string) { o.mu.Lock(); o.steps = append(o.steps, s); o.mu.Unlock() }
func (o *order) get() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.steps...)
}

type testLeg struct {
	name   string
	stream *media.Stream
	o      *order
	check  chan End
}

func (l *testLeg) Stream() *media.Stream { return l.stream }
func (l *testLeg) Check(time.Time) (End, bool) {
	select {
	case e := <-l.check:
		return e, true
	default:
		return End{}, false
	}
}
func (l *testLeg) Hangup(context.Context, End) { l.o.add("hangup " + l.name) }

type testPeer struct {
	o      *order
	done   chan struct{}
	end    End
	closed chan Reason
}

func (p *testPeer) Format() media.Format  { return media.FormatULaw8k }
func (p *testPeer) Start(Line) error      { return nil }
func (p *testPeer) OnAudio(media.Frame)   {}
func (p *testPeer) OnDigit(media.Digit)   {}
func (p *testPeer) Done() <-chan struct{} { return p.done }
func (p *testPeer) End() End              { return p.end }
func (p *testPeer) Close(r Reason)        { p.o.add("close agent " + string(r)); p.closed <- r }

func newLeg(t *testing.T, name string, o *order) *testLeg {
	t.Helper()
	pool, err := media.NewPortPool(41000+2*int(time.Now().UnixNano()%4000), 49999)
	if err != nil {
		t.Fatal(err)
	}
	w := clock.New(clock.Options{})
	w.Start()
	t.Cleanup(w.Stop)
	s, err := media.NewStream(pool, netip.MustParseAddr("127.0.0.1"), media.Options{Wheel: w})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testLeg{name: name, stream: s, o: o, check: make(chan End, 1)}
}

func run(c *Call) <-chan End {
	out := make(chan End, 1)
	go func() { e, _ := c.Run(); out <- e }()
	return out
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
		var zero T
		return zero
	}
}

// TestSupervisor: each way a call ends, with what the supervisor closes and in
// which order.
func TestSupervisor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		trigger func(c *Call, leg *testLeg, agent *testPeer, shutdown chan struct{})
		want    End
		steps   []string
	}{
		{name: "the caller hangs up",
			trigger: func(c *Call, _ *testLeg, _ *testPeer, _ chan struct{}) {
				c.End(End{Reason: CallerHangup})
				c.End(End{Reason: APIHangup}) // the first request wins
			},
			want: End{Reason: CallerHangup}, steps: []string{"hangup caller", "close agent caller_hangup"}},
		{name: "the agent ends it",
			trigger: func(_ *Call, _ *testLeg, a *testPeer, _ chan struct{}) {
				a.end = End{Reason: AgentHangup}
				close(a.done)
			},
			want: End{Reason: AgentHangup}, steps: []string{"hangup caller", "close agent agent_hangup"}},
		{name: "the provider fails",
			trigger: func(_ *Call, _ *testLeg, a *testPeer, _ chan struct{}) {
				a.end = Fail(ProviderError)
				close(a.done)
			},
			want: Fail(ProviderError), steps: []string{"hangup caller", "close agent provider_error"}},
		{name: "the leg's check",
			trigger: func(_ *Call, l *testLeg, _ *testPeer, _ chan struct{}) { l.check <- End{Reason: RTPTimeout} },
			want:    End{Reason: RTPTimeout}, steps: []string{"hangup caller", "close agent rtp_timeout"}},
		{name: "shutdown",
			trigger: func(_ *Call, _ *testLeg, _ *testPeer, s chan struct{}) { close(s) },
			want:    End{Reason: Shutdown}, steps: []string{"hangup caller", "close agent shutdown"}},
		{name: "max duration", opts: Options{MaxDuration: 50 * time.Millisecond},
			trigger: func(*Call, *testLeg, *testPeer, chan struct{}) {},
			want:    End{Reason: MaxDuration}, steps: []string{"hangup caller", "close agent max_duration"}},
		{name: "no ACK closes the agent first", opts: Options{PeerFirst: func(r Reason) bool { return r == NoACK }},
			trigger: func(c *Call, _ *testLeg, _ *testPeer, _ chan struct{}) { c.End(Fail(NoACK)) },
			want:    Fail(NoACK), steps: []string{"close agent no_ack", "hangup caller"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &order{}
			leg := newLeg(t, "caller", o)
			agent := &testPeer{o: o, done: make(chan struct{}), closed: make(chan Reason, 1)}
			shutdown := make(chan struct{})
			opts := tc.opts
			opts.Leg, opts.Peer, opts.Shutdown = leg, agent, shutdown
			c := New(opts)
			c.Answered(time.Now())
			ended := run(c)
			tc.trigger(c, leg, agent, shutdown)
			e := wait(t, ended)
			if e.Reason != tc.want.Reason || e.Outcome != tc.want.Outcome || e.AnsweredAt.IsZero() || e.EndedAt.Before(e.AnsweredAt) {
				t.Fatalf("end %+v, want %+v", e, tc.want)
			}
			if got := o.get(); len(got) != len(tc.steps) || got[0] != tc.steps[0] || got[1] != tc.steps[1] {
				t.Fatalf("steps %q, want %q", got, tc.steps)
			}
			if !c.Ended() || c.Go(func() {}) {
				t.Fatal("the call takes work after its end")
			}
		})
	}
}

// TestBridgedTransfer: once the caller is handed to a far leg the agent leaves
// (closed by the supervisor once it says so), the call goes on, the caller's
// audio goes to the far leg, and whoever hangs up the call ends as transferred
// with both legs hung up.
func TestBridgedTransfer(t *testing.T) {
	o := &order{}
	leg := newLeg(t, "caller", o)
	far := newLeg(t, "far", o)
	agent := &testPeer{o: o, done: make(chan struct{}), closed: make(chan Reason, 1)}
	c := New(Options{Leg: leg, Peer: agent})
	c.Answered(time.Now())
	ended := run(c)
	since := time.Now().Add(-3 * time.Second)
	c.Bridge(far, "+27215550100", since)
	if !c.Bridged() || c.Peer() == Peer(agent) {
		t.Fatal("the caller still talks to the agent")
	}
	agent.end = End{Reason: Transferred}
	close(agent.done)
	if r := wait(t, agent.closed); r != Transferred {
		t.Fatalf("agent closed with %q", r)
	}
	select {
	case e := <-ended:
		t.Fatalf("the call ended with the agent: %+v", e)
	default:
	}
	c.End(End{Reason: TransferHangup}) // the far end's BYE
	e := wait(t, ended)
	if e.Reason != TransferHangup || e.Outcome != OutcomeTransferred || e.ReferTo != "+27215550100" || e.ReferSeconds < 3 {
		t.Fatalf("end %+v", e)
	}
	steps := o.get()
	if len(steps) != 3 || steps[1] != "hangup caller" || steps[2] != "hangup far" {
		t.Fatalf("steps %q", steps)
	}
}
