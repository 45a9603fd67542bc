// Package media is one call's RTP endpoint: ports, the inbound path (RTP
// reader, jitter buffer, codec conversion to the consumer's format), the
// outbound path (re-framing, encoding, a bounded queue and a pacer), RFC 4733
// digits, RTCP and RFC 3550 statistics.
//
// All calls share one timing wheel (media/clock) for pacing, playout and
// RTCP, and on Linux a few shared readers (one per GOMAXPROCS, epoll) that
// read every stream's RTP and RTCP sockets; elsewhere a Stream runs two
// reader goroutines of its own. Close takes the stream's sockets out of its
// reader (or stops and waits for its goroutines) and cancels its timers. A
// Stream on a Transport (NewStreamOn: a WebRTC call) reads and writes its RTP
// through the transport instead of UDP sockets, and leaves RTCP to it.
package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/media/sdp"
)

// Options configure a Stream.
type Options struct {
	Logger *slog.Logger // nil: discard
	Wheel  *clock.Wheel // required; drives pacing, playout and RTCP
	// Clock stamps packet arrivals; nil means Wheel.Clock().
	Clock clock.Clock
	// JitterMin and JitterMax bound the jitter buffer's depth; defaults
	// 20 ms and 120 ms.
	JitterMin, JitterMax time.Duration
	// Concealment fills audio missing at its playout time; default
	// jitter.ConcealPitch (G.711 Appendix I).
	Concealment jitter.Concealment
	// QueueMax bounds the outbound queue; default 20 s of audio. When it
	// is full the oldest audio is dropped and counted.
	QueueMax time.Duration
	// RTCPInterval is the mean RTCP report interval; default 5 s.
	RTCPInterval time.Duration
	// CNAME for RTCP SDES; default "cxco@" + local address.
	CNAME string
	// Sources says where RTP and RTCP are accepted from (see SourcePolicy); the
	// zero value accepts only the SDP's address.
	Sources SourcePolicy
}

// Digit is one RFC 4733 telephone event.
type Digit struct {
	Digit     rune   // '0'-'9', '*', '#', 'A'-'D', or '!' for flash
	Event     uint8  // RFC 4733 event code
	Timestamp uint32 // RTP timestamp of the event
	Arrival   time.Time
}

// Stream is one call's RTP endpoint. Create it with NewStream (which binds
// its ports, so the port can go into the SDP answer) or NewStreamOn (over a
// WebRTC call's Transport), Start it with the negotiated parameters, Close it
// when the call ends.
//
// Goroutines: none of its own on Linux (a shared reader reads its sockets);
// elsewhere the RTP reader and the RTCP reader; on a Transport, the RTP
// reader. Timers on the shared wheel: the pacer (every 20 ms), the
// playout timer (at each frame's due time) and the RTCP timer (not on a
// Transport).
type Stream struct {
	opt    Options
	log    *slog.Logger
	clk    clock.Clock
	pool   *PortPool
	port   int
	local  netip.Addr
	rtp    udpConn // nil on a Transport
	rtcp   udpConn
	tr     Transport // set by NewStreamOn: RTP goes over it, and RTCP is the transport's
	shard  *clock.Shard
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once

	starting atomic.Bool // set by the first Start: a second one fails
	started  atomic.Bool // set once Start has set the stream up: Play and the rest see it whole
	codec    wireCodec
	pt       uint8
	dtmfPT   uint8
	hasDTMF  bool
	consumer Consumer

	remote     atomic.Pointer[netip.AddrPort]
	remoteRTCP atomic.Pointer[netip.AddrPort]
	sdpRemote  atomic.Pointer[netip.AddrPort] // the SDP's RTP address (remote may move to the latched source)
	dir        atomic.Uint32                  // sdp.Direction
	hold       holdClock

	// SRTP contexts (nil: plain RTP); see srtp.go. srtpMu orders Update's
	// key changes.
	srtpIn, srtpOut atomic.Pointer[srtpPair]
	srtpMu          sync.Mutex

	// polled: the stream's sockets are read by a shared reader
	// (poller_linux.go); nil: by the stream's own reader goroutines
	polled *polled

	in  inbound
	out outbound
	ctl control

	playTimer clock.Timer
	paceTimer clock.Timer
	paceClass int // the pacing trace's: 0 when paceTimer runs first in its tick (InitFirst), 1 otherwise
	rtcpTimer clock.Timer
}

// NewStream binds an RTP/RTCP port pair from pool on ip (invalid or
// unspecified: every local address, IPv4 and IPv6). It returns an error
// wrapping ErrNoPorts when the pool is exhausted.
func NewStream(pool *PortPool, ip netip.Addr, opts Options) (*Stream, error) {
	s, err := newStream(opts)
	if err != nil {
		return nil, err
	}
	a, b, port, err := pool.allocate(ip)
	if err != nil {
		return nil, fmt.Errorf("media: allocate RTP ports: %w", err)
	}
	s.pool, s.port, s.local, s.rtp, s.rtcp = pool, port, ip, a, b
	if s.opt.CNAME == "" {
		s.opt.CNAME = fmt.Sprintf("cxco@%s", a.LocalAddr())
	}
	return s, nil
}

// paceFirst: the pacer's timers run first in their shard's tick, before its
// reads and its playouts (which write to the consumer: the bridge's websocket
// writes), so a packet to the caller never waits for them. Off
// (CXCO_PACE_FIRST=0): in slot order with the playouts, after the reads; for
// an A/B.
var paceFirst = os.Getenv("CXCO_PACE_FIRST") != "0"

// paceHalf (CXCO_PACE_FIRST=half): every other stream's pacer runs first, the
// rest in slot order, so that one run compares the two on the same shards at
// the same moments (with CXCO_PACE_TRACE=1, which reports them apart); a
// measurement on a machine whose load comes and goes.
var (
	paceHalf    = os.Getenv("CXCO_PACE_FIRST") == "half"
	paceStreams atomic.Uint32
)

// newStream applies the option defaults and sets up the timers; the caller
// gives the stream its sockets or its transport.
func newStream(opts Options) (*Stream, error) {
	if opts.Wheel == nil {
		return nil, fmt.Errorf("media: Options.Wheel is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = opts.Wheel.Clock()
	}
	if opts.QueueMax <= 0 {
		opts.QueueMax = 20 * time.Second
	}
	if opts.RTCPInterval <= 0 {
		opts.RTCPInterval = 5 * time.Second
	}
	if opts.Sources.RelatchSilence <= 0 {
		opts.Sources.RelatchSilence = time.Second
	}
	s := &Stream{opt: opts, log: opts.Logger, clk: opts.Clock}
	s.shard = opts.Wheel.Shard()
	s.shard.Init(&s.playTimer, s.onPlayout)
	if paceFirst && (!paceHalf || paceStreams.Add(1)%2 == 0) {
		s.shard.InitFirst(&s.paceTimer, s.onPace)
	} else {
		s.shard.Init(&s.paceTimer, s.onPace)
		s.paceClass = 1
	}
	s.shard.Init(&s.rtcpTimer, s.onRTCPTimer)
	s.out.ssrc = rand.Uint32()
	s.out.seq = uint16(rand.Uint32())
	s.out.ts0 = rand.Uint32()
	return s, nil
}

// LocalPort returns the RTP port (RTCP is LocalPort()+1); 0 on a Transport.
func (s *Stream) LocalPort() int { return s.port }

// LocalAddr returns the RTP socket's address; invalid on a Transport.
func (s *Stream) LocalAddr() netip.AddrPort {
	if s.rtp == nil {
		return netip.AddrPort{}
	}
	return s.rtp.LocalAddr().(*net.UDPAddr).AddrPort()
}

// SSRC returns our outbound SSRC.
func (s *Stream) SSRC() uint32 { return s.out.ssrc }

// Start begins media with the negotiated parameters: the reader goroutines,
// the pacer and RTCP. Frames go to c.Sink in c.Format. n.SRTP, when set,
// keys SRTP (not on a Transport, which has its own).
func (s *Stream) Start(n sdp.Negotiated, c Consumer) error {
	if s.closed.Load() {
		return ErrClosed
	}
	codec, err := wireOf(n.Codec)
	if err != nil {
		return err
	}
	if n.SRTP != nil && s.tr != nil {
		return fmt.Errorf("%w: a stream on a Transport leaves encryption to it", ErrSRTP)
	}
	if c.Format != FormatPCM16k {
		c.Format = FormatULaw8k
	}
	if !s.starting.CompareAndSwap(false, true) {
		return ErrStarted
	}
	var (
		dec wbDecoder
		enc wbEncoder
	)
	if codec.wideband() {
		if dec, enc, err = newWideband(codec, n.Codec); err != nil {
			s.starting.Store(false)
			return err
		}
	}
	if n.SRTP != nil {
		if err := s.setSRTP(n.SRTP); err != nil {
			if dec != nil {
				dec.close()
				enc.close()
			}
			s.starting.Store(false)
			return err
		}
	}
	s.codec = codec
	s.pt = n.Codec.PayloadType
	s.dtmfPT, s.hasDTMF = n.DTMF.PayloadType, n.HasDTMF
	s.consumer = c
	s.setRemote(n.Remote, n.RemoteRTCP)
	s.dir.Store(uint32(n.Direction))

	now := s.clk.Now()
	s.hold.set(!n.Direction.Sends(), now)
	s.in.init(s, codec, dec, c, now)
	s.out.init(s, codec, enc, c.Format, now)
	s.ctl.init(now)
	s.started.Store(true)

	if s.tr != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.readTransport()
		}()
		s.paceTimer.Reset(now)
	} else {
		if err := s.startPolling(); err != nil {
			lvl := slog.LevelWarn
			if errors.Is(err, errors.ErrUnsupported) {
				lvl = slog.LevelDebug
			}
			s.log.Log(context.Background(), lvl, "media: no shared reader, the stream reads its sockets itself", "err", err)
			if err := s.ownSockets(); err != nil {
				// Sockets the shared readers would have read and that Go's
				// netpoller cannot take: the call sends but hears nothing,
				// and the RTP timeout ends it.
				s.log.Error("media: the stream cannot read its sockets", "err", err)
			} else {
				s.wg.Add(2)
				go func() {
					defer s.wg.Done()
					s.readRTP()
				}()
				go func() {
					defer s.wg.Done()
					s.readRTCP()
				}()
			}
		}
		s.paceTimer.Reset(now)
		s.rtcpTimer.Reset(now.Add(s.rtcpDelay()))
	}
	s.log.Info("media started", "local", s.LocalAddr(), "remote", n.Remote, "codec", n.Codec.Name,
		"pt", n.Codec.PayloadType, "dtmf", n.HasDTMF, "direction", n.Direction, "format", c.Format, "srtp", s.SRTP())
	return nil
}

// SRTP returns the stream's SRTP suite, "" for plain RTP.
func (s *Stream) SRTP() string {
	if p := s.srtpOut.Load(); p != nil {
		return p.suite
	}
	return ""
}

// Codec returns the codec on the wire ("" before Start).
func (s *Stream) Codec() string {
	if !s.started.Load() {
		return ""
	}
	return s.codec.String()
}

// Update applies a re-INVITE's negotiation: new remote address and
// direction, and new SRTP keys if the far end changed its key or the suite.
// The codec chosen at Start stays, and so does SRTP or plain RTP: the
// caller's offer/answer keeps them (sdp.Local.Fix).
func (s *Stream) Update(n sdp.Negotiated) {
	if n.SRTP != nil && s.srtpOut.Load() != nil {
		s.srtpMu.Lock()
		if err := s.setSRTP(n.SRTP); err != nil {
			s.log.Warn("SRTP keys of the new offer refused; keeping the old ones", "err", err)
		}
		s.srtpMu.Unlock()
	}
	s.SetRemote(n.Remote, n.RemoteRTCP)
	s.SetDirection(n.Direction)
}

// SetRemote sets where RTP and RTCP go until the far end's own packets
// arrive, and forgets the latched source so the first valid packet from what
// the source policy accepts for the new address latches again (the media
// moved). An invalid rtp (hold with c=0.0.0.0) stops sending.
func (s *Stream) SetRemote(rtp, rtcp netip.AddrPort) {
	s.setRemote(rtp, rtcp)
	s.in.mu.Lock()
	s.in.latched = false
	s.in.mu.Unlock()
}

func (s *Stream) setRemote(rtp, rtcp netip.AddrPort) {
	rtp = unmap(rtp)
	rtcp = unmap(rtcp)
	if !rtcp.IsValid() && rtp.IsValid() && rtp.Port() < 65535 {
		rtcp = netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1)
	}
	s.remote.Store(&rtp)
	s.remoteRTCP.Store(&rtcp)
	sdpRTP := rtp
	s.sdpRemote.Store(&sdpRTP)
}

// Remote returns where RTP is sent now.
func (s *Stream) Remote() netip.AddrPort {
	if p := s.remote.Load(); p != nil {
		return *p
	}
	return netip.AddrPort{}
}

// SetDirection sets our direction (as in our SDP): we send only when it is
// sendrecv or sendonly, and RTP inactivity is only counted while it is
// sendrecv or recvonly.
func (s *Stream) SetDirection(d sdp.Direction) {
	old := sdp.Direction(s.dir.Swap(uint32(d)))
	if s.started.Load() {
		s.hold.set(!d.Sends(), s.clk.Now())
	}
	if !old.Receives() && d.Receives() {
		s.in.mu.Lock()
		s.in.lastRecv = s.clk.Now() // hold time is not inactivity
		s.in.mu.Unlock()
	}
}

// holdClock adds up the time a stream spends on hold.
type holdClock struct {
	mu    sync.Mutex
	on    bool
	since time.Time
	sum   time.Duration
}

func (h *holdClock) set(on bool, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case on && !h.on:
		h.since = now
	case !on && h.on:
		h.sum += now.Sub(h.since)
	}
	h.on = on
}

func (h *holdClock) total(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on {
		return h.sum + now.Sub(h.since)
	}
	return h.sum
}

// Direction returns our current direction.
func (s *Stream) Direction() sdp.Direction { return sdp.Direction(s.dir.Load()) }

// LastReceived returns when RTP was last received, for the RTP inactivity
// timeout. Start and the end of a hold count as activity, and while our
// direction does not receive (hold) it returns the current time.
func (s *Stream) LastReceived() time.Time {
	if !s.Direction().Receives() {
		return s.clk.Now()
	}
	s.in.mu.Lock()
	defer s.in.mu.Unlock()
	return s.in.lastRecv
}

// InboundChain describes the inbound path, e.g.
// "RTP(PCMU) -> Jitter+PLC(pitch) -> PCMU(decode) -> Resample(8000->16000) -> Sink".
func (s *Stream) InboundChain() string {
	if !s.started.Load() {
		return ""
	}
	return s.in.chain.String()
}

// OutboundChain describes the outbound path.
func (s *Stream) OutboundChain() string {
	if !s.started.Load() {
		return ""
	}
	return s.out.chain.String()
}

// Close stops the stream: it sends an RTCP BYE, cancels its timers, closes
// the sockets (or the Transport), waits for the reader goroutines and
// releases the ports. It must not be called from Sink or OnDigit.
func (s *Stream) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		if s.started.Load() {
			s.hold.set(false, s.clk.Now()) // a hold ends with the stream
			s.playTimer.StopWait()
			s.paceTimer.StopWait()
			s.rtcpTimer.StopWait()
			if s.tr == nil {
				s.sendRTCP(s.clk.Now(), true)
			}
		}
		if s.tr != nil {
			_ = s.tr.Close()
			s.wg.Wait()
		} else {
			s.stopPolling() // before the sockets close: their descriptors are read until it returns
			s.rtp.Close()
			s.rtcp.Close()
			s.wg.Wait()
			s.pool.release(s.port)
		}
		// The readers and the pacer are done: the codecs' C memory can go.
		if s.in.dec != nil {
			s.in.dec.close()
		}
		s.out.mu.Lock()
		if s.out.enc != nil {
			s.out.enc.close()
		}
		s.out.signalDrained()
		s.out.q.flush()
		s.out.mu.Unlock()
		if s.started.Load() {
			st := s.Stats()
			s.log.Info("media closed", "stats", st)
		}
	})
	return nil
}

func unmap(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() {
		return a
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// jitterOptions builds the jitter buffer's options.
func (s *Stream) jitterOptions(wire law) jitter.Options[byte] {
	return jitter.Options[byte]{Codec: jitterCodec{wire}, Min: s.opt.JitterMin, Max: s.opt.JitterMax,
		Concealment: s.opt.Concealment}
}
