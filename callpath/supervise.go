package callpath

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/sdp"
)

// Leg is one side of a call with a person on it: a SIP dialog, a browser's peer
// connection, the far leg of a bridged transfer. It reports its own end (a BYE
// from the far end, ICE failing, no ACK) through Call.End.
type Leg interface {
	// Stream is the leg's audio, in and out.
	Stream() *media.Stream
	// Check runs once a second while the call is up (RTP inactivity, session
	// timers); ok ends the call with e.
	Check(now time.Time) (e End, ok bool)
	// Hangup ends the leg from our side once the call ended with e — a BYE
	// unless the far end already hung up, closing the peer connection — and
	// returns when that is done or ctx ends.
	Hangup(ctx context.Context, e End)
}

// ErrNoTransfer: the call's leg cannot hand the caller over (a browser call).
var ErrNoTransfer = errors.New("this call cannot be transferred; transfers work on phone calls")

// Options configure a Call.
type Options struct {
	Leg  Leg
	Peer Peer
	Log  *slog.Logger
	// MaxDuration ends the call this long after it is answered (default 1 h).
	MaxDuration time.Duration
	// Shutdown ends the call when closed (reason Shutdown).
	Shutdown <-chan struct{}
	// Transfer hands the caller over (Line.Transfer); nil: ErrNoTransfer.
	Transfer func(ctx context.Context, target string, bridge bool) error
	// PeerFirst says, for the reason a call ended, whether the peer is closed
	// before the leg is hung up (the default is after). A SIP call whose 200 was
	// never ACKed closes the provider session at once: it is billed by the
	// second and must not wait for a BYE to a dead peer.
	PeerFirst func(Reason) bool
}

// Call is one answered call: its leg, the peer it talks to, and the supervisor
// (Run) that ends it. It is the Line its peer plays into.
//
// Goroutines: Run, the call's supervisor; and those Go starts (a session
// refresh, closing the agent once it left after a transfer), which Run waits
// for before it returns.
type Call struct {
	o     Options
	agent Peer // the peer the call was answered for

	mu         sync.Mutex
	started    bool
	answeredAt atomic.Pointer[time.Time]
	answered   chan struct{}
	answerOnce sync.Once

	now  atomic.Pointer[peerBox] // who the caller talks to now
	far  atomic.Pointer[bridged]
	swap chan struct{}

	endCh  chan End
	done   chan struct{}
	ctx    context.Context // cancelled when the call ends
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type peerBox struct{ Peer }

// bridged is the far leg of a bridged transfer and what the conversation
// records of it.
type bridged struct {
	leg    Leg
	target string
	since  time.Time
}

// New prepares a call; Run supervises it.
func New(o Options) *Call {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = time.Hour
	}
	c := &Call{o: o, agent: o.Peer, answered: make(chan struct{}), swap: make(chan struct{}, 1),
		endCh: make(chan End, 1), done: make(chan struct{})}
	c.now.Store(&peerBox{o.Peer})
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Context is cancelled once the call ends: work a call started for itself (a
// session refresh) stops with it.
func (c *Call) Context() context.Context { return c.ctx }

// End asks the supervisor to end the call; the first request wins. The end time
// is taken now (unless e has one), before anyone waits on anything: it is what
// the call is billed to.
func (c *Call) End(e End) {
	if e.EndedAt.IsZero() {
		e.EndedAt = time.Now()
	}
	select {
	case c.endCh <- e:
	default:
	}
}

// Done is closed once the supervisor decided the call's end.
func (c *Call) Done() <-chan struct{} { return c.done }

// Ended reports whether the call is over (or ending).
func (c *Call) Ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Answered records when the call was answered (the first time only) and starts
// its max-duration clock.
func (c *Call) Answered(at time.Time) {
	c.answerOnce.Do(func() {
		c.answeredAt.Store(&at)
		close(c.answered)
	})
}

// Start starts the leg's media with the negotiated parameters and then the
// peer, which may play audio at once. Caller audio can reach the peer's OnAudio
// just before its Start.
func (c *Call) Start(neg sdp.Negotiated) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.Ended() {
		return nil
	}
	c.started = true
	if err := c.o.Leg.Stream().Start(neg, media.Consumer{Format: c.agent.Format(), Sink: c.OnAudio, OnDigit: c.OnDigit}); err != nil {
		return err
	}
	return c.agent.Start(c)
}

// Peer is who the caller talks to now: the agent, or the far leg of a bridged
// transfer.
func (c *Call) Peer() Peer { return c.now.Load().Peer }

// Agent is the peer the call was answered for.
func (c *Call) Agent() Peer { return c.agent }

// Bridged reports whether the caller was handed to a bridged transfer's far leg.
func (c *Call) Bridged() bool { return c.far.Load() != nil }

// OnAudio hands a frame of the caller's audio to the current peer (media goroutine).
func (c *Call) OnAudio(f media.Frame) { c.Peer().OnAudio(f) }

// OnDigit hands a caller's digit to the current peer.
func (c *Call) OnDigit(d media.Digit) { c.Peer().OnDigit(d) }

// Bridge hands the caller to far, a leg the transfer called (target) and
// connected: from now on the caller's audio goes to it; its own audio must be
// played into this call's stream by whoever started its media. The agent leaves
// the call (its session ends itself, and the supervisor closes it); the
// conversation ends as transferred whoever hangs up.
func (c *Call) Bridge(far Leg, target string, since time.Time) {
	c.far.Store(&bridged{leg: far, target: target, since: since})
	c.now.Store(&peerBox{legPeer{leg: far, format: c.agent.Format()}})
	select {
	case c.swap <- struct{}{}:
	default:
	}
}

// Go runs f on a goroutine the supervisor waits for before Run returns; false
// (f not run) once the call is over.
func (c *Call) Go(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Ended() {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// AnsweredAt implements Line.
func (c *Call) AnsweredAt() time.Time {
	if t := c.answeredAt.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// Play, Flush and Drained implement Line over the leg's stream.
func (c *Call) Play(audio []byte) error  { return c.o.Leg.Stream().Play(audio) }
func (c *Call) Flush() int               { return c.o.Leg.Stream().Flush() }
func (c *Call) Drained() <-chan struct{} { return c.o.Leg.Stream().Drained() }
func (c *Call) Queued() int              { return c.o.Leg.Stream().Queued() }

// Hangup implements Line: the peer ends the call.
func (c *Call) Hangup(reason Reason) { c.End(End{Reason: reason}) }

// Transfer implements Line.
func (c *Call) Transfer(ctx context.Context, target string, bridge bool) error {
	if c.o.Transfer == nil {
		return ErrNoTransfer
	}
	return c.o.Transfer(ctx, target, bridge)
}

// Run is the call's supervisor: it waits for whatever ends the call first —
// an End request (a BYE, a transfer, the API, a leg's failure), the agent
// ending it, max duration, a leg's Check, shutdown — and then ends it once:
// the peer closed and the leg hung up (in the order PeerFirst says), the far
// leg of a bridged transfer too, media closed, the goroutines of Go waited
// for. It returns how the call ended and its media statistics, for the caller
// to record.
func (c *Call) Run() (End, media.Stats) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	answered := c.answered
	var limit <-chan time.Time
	agentDone := c.agent.Done()
	agentOpen := true
	var e End
loop:
	for {
		select {
		case e = <-c.endCh:
			break loop
		case <-answered:
			answered = nil
			t := time.NewTimer(c.o.MaxDuration - time.Since(c.AnsweredAt()))
			defer t.Stop()
			limit = t.C
		case <-c.swap:
			continue // the caller talks to the far leg now
		case <-agentDone:
			agentDone = nil
			if pe := c.agent.End(); pe.Reason != Transferred && !c.Bridged() {
				e = pe
				break loop
			}
			// The agent left after a transfer: a REFER ends the call by itself, a
			// bridged call goes on with the far leg.
			agentOpen = false
			c.Go(func() { c.agent.Close(Transferred) })
		case <-limit:
			e = End{Reason: MaxDuration}
			break loop
		case <-c.o.Shutdown:
			e = End{Reason: Shutdown}
			break loop
		case now := <-tick.C:
			if le, ok := c.o.Leg.Check(now); ok {
				e = le
				break loop
			}
			if b := c.far.Load(); b != nil {
				if le, ok := b.leg.Check(now); ok {
					e = le
					break loop
				}
			}
		}
	}
	// The call is billed to its end by its own clock: when the BYE, CANCEL,
	// timer or far side's end was heard (End stamps it; the others are heard
	// here), whatever the hang-up, the peer's close and the store take below.
	if e.EndedAt.IsZero() {
		e.EndedAt = time.Now()
	}
	b := c.far.Load()
	if b != nil && e.Outcome == OutcomeCompleted {
		// Whoever hung up, a call that was bridged to a human was transferred.
		e.Outcome, e.ReferTo = OutcomeTransferred, b.target
	}
	if b != nil && e.ReferSeconds == 0 {
		e.ReferSeconds = int(e.EndedAt.Sub(b.since).Seconds() + 0.5)
	}
	e.AnsweredAt = c.AnsweredAt()
	c.mu.Lock()
	close(c.done)
	c.mu.Unlock()
	c.cancel()
	closePeer := func() {
		if agentOpen {
			c.agent.Close(e.Reason)
		}
		c.o.Log.Info("far side closed", "reason", e.Reason)
	}
	peerFirst := c.o.PeerFirst != nil && c.o.PeerFirst(e.Reason)
	if peerFirst {
		closePeer()
	}
	// The hang-ups run without any request's context, with their own limit.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.o.Leg.Hangup(ctx, e)
	if b != nil {
		b.leg.Hangup(ctx, e)
	}
	if !peerFirst {
		closePeer()
	}
	c.wg.Wait()
	st := c.o.Leg.Stream()
	st.Close()
	return e, st.Stats()
}

// legPeer is a bridged transfer's far leg as the caller's peer: the caller's
// audio is played to it.
type legPeer struct {
	leg    Leg
	format media.Format
}

func (p legPeer) Format() media.Format  { return p.format }
func (p legPeer) Start(Line) error      { return nil }
func (p legPeer) OnAudio(f media.Frame) { _ = p.leg.Stream().Play(f.Audio) }
func (p legPeer) OnDigit(media.Digit)   {}
func (p legPeer) Done() <-chan struct{} { return nil }
func (p legPeer) End() End              { return End{} }
func (p legPeer) Close(Reason)          {}

var _ Line = (*Call)(nil)
