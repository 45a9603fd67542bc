package bridge_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/bridge/elevenlabs"
	"github.com/cxco/gateway/bridge/elevenlabs/contract"
	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/bridge/mediastream"
	mscontract "github.com/cxco/gateway/bridge/mediastream/contract"
	"github.com/cxco/gateway/bridge/mediastream/mediastreamsim"
	"github.com/cxco/gateway/bridge/openai"
	oaicontract "github.com/cxco/gateway/bridge/openai/contract"
	"github.com/cxco/gateway/bridge/openai/openaisim"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/callpath/callstore"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/sdp"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

// rig is one bridged call without SIP: a real simulator over a real websocket, a
// real Redis, a real media stream, and a UDP "phone" at the other end of the RTP.
type rig struct {
	t   testing.TB
	red *redistest.Redis
	// message and vars go into info() (a leave_message session).
	message string
	vars    map[string]any
	st      *store.Store
	sim     *elevenlabssim.Server
	oai     *openaisim.Server
	bot     *mediastreamsim.Server
	botURL  string
	simURL  string
	prov    *elevenlabs.Provisioner
	conn    *bridge.Connector
	agent   *store.Agent
	co      *store.Company
	conv    *store.Conversation
	calls   *callstore.Store
	rec     callpath.Record
	wheel   *clock.Wheel
	stream  *media.Stream
	call    *testCall
	sess    callpath.Peer
	phone   *rtpPhone
	log     *slog.Logger
	ended   atomic.Bool
}

type rigOpts struct {
	format        string // audio_format of the agent
	opening       string
	sim           elevenlabssim.Options
	config        map[string]any // more of the agent's config
	beforePublish func(*rig)     // runs once the company exists
	language      string         // the agent's language (en)
	timeout       time.Duration
	endCallGrace  time.Duration                                // Connector.EndCallGrace
	providerURL   string                                       // a scripted provider instead of the simulator's websocket
	onUpstream    func(fromArrival, fromPlayout time.Duration) // Connector.OnUpstream
	// provider is the agent's provider: elevenlabs (the default) or openai,
	// whose simulator the rig starts too (with openai's options).
	provider string
	openai   openaisim.Options
	bot      mediastreamsim.Options
}

func testLogger() *slog.Logger {
	if os.Getenv("CXCO_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newRig prepares a company, a published agent and the simulator, but does not connect.
func newRig(t testing.TB, o rigOpts) *rig {
	t.Helper()
	r := &rig{t: t, log: testLogger()}
	red := redistest.StartRedis(t)
	r.red = red
	sealer, _ := store.NewSealer(store.GenerateSecretKey())
	ctx := context.Background()
	var err error
	r.st, err = store.Open(ctx, store.Options{URL: red.URL, Sealer: sealer, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	if o.sim.AnalysisDelay == 0 {
		o.sim.AnalysisDelay = 50 * time.Millisecond
	}
	if o.providerURL != "" {
		o.sim.SignedURLBase = "ws" + strings.TrimPrefix(o.providerURL, "http")
	}
	// Every message either side sends must keep to the provider's AsyncAPI contract.
	if o.sim.Observe == nil {
		o.sim.Observe = contractCheck(t)
	}
	r.sim = elevenlabssim.New(o.sim)
	hs := httptest.NewServer(r.sim)
	t.Cleanup(func() { r.sim.Close(); hs.Close() })
	r.simURL = hs.URL
	r.prov = &elevenlabs.Provisioner{Client: elevenlabs.NewClient(hs.URL), Store: r.st, PlatformKey: "k", Log: r.log}
	prov := r.prov
	el := &elevenlabs.Provider{Provisioner: prov, Log: r.log, AnalysisRetry: 2 * time.Second, EndCallGrace: o.endCallGrace}
	providers := map[string]bridge.Provider{el.Slug(): el}
	if o.provider == store.ProviderOpenAI {
		if o.openai.Observe == nil {
			o.openai.Observe = openaiContractCheck(t)
		}
		r.oai = openaisim.New(o.openai)
		ohs := httptest.NewServer(r.oai)
		t.Cleanup(func() { r.oai.Close(); ohs.Close() })
		oa := &openai.Provider{BaseURL: ohs.URL, PlatformKey: "sk-test", Store: r.st, Log: r.log}
		providers[oa.Slug()] = oa
	}
	if o.provider == store.ProviderMediaStream {
		if o.bot.Observe == nil {
			o.bot.Observe = botContractCheck(t)
		}
		r.bot = mediastreamsim.New(o.bot)
		bhs := httptest.NewServer(r.bot)
		t.Cleanup(func() { r.bot.Close(); bhs.Close() })
		r.botURL = "ws" + strings.TrimPrefix(bhs.URL, "http") + "/bot"
		ms := &mediastream.Provider{Store: r.st, AllowPrivate: true, Log: r.log}
		providers[ms.Slug()] = ms
	}
	r.conn = &bridge.Connector{Providers: providers, Timeout: o.timeout, Log: r.log, OnUpstream: o.onUpstream}
	t.Cleanup(r.conn.Close)
	r.co, _, err = r.st.CreateCompany(ctx, "Acme", "enterprise", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.AddNumber(ctx, "+27210000001", "ZA", "sip_trunk", false); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{}
	for k, v := range o.config {
		cfg[k] = v
	}
	if o.format != "" {
		cfg["audio_format"] = o.format
	}
	if o.provider == store.ProviderMediaStream {
		cfg["bot"] = map[string]any{"url": r.botURL, "parameters": map[string]any{"team": "sales"}}
	}
	opening := o.opening
	if opening == "" {
		opening = "Hello, thanks for calling."
	}
	lang := o.language
	if lang == "" {
		lang = "en"
	}
	a, err := r.st.CreateAgent(ctx, store.Agent{CompanyID: r.co.ID, Name: "Tester", Personality: "You test.", OpeningLine: opening,
		VoiceID: 1, Language: lang, Config: cfg, VoiceProvider: o.provider})
	if err != nil {
		t.Fatal(err)
	}
	if o.beforePublish != nil {
		o.beforePublish(r)
	}
	create := prov.CreateAgent
	if o.provider == store.ProviderOpenAI || o.provider == store.ProviderMediaStream {
		create = func(context.Context, *store.Agent) (store.ProviderAgent, error) { return store.ProviderAgent{}, nil } // nothing lives at OpenAI
	}
	r.agent, err = r.st.PublishAgent(ctx, r.co.ID, a.ID, "ZA", create, func(context.Context, store.ProviderAgent) {})
	if err != nil {
		t.Fatal(err)
	}
	caller := "+27820000002"
	r.calls = callstore.New(r.st, r.log)
	r.rec, err = r.calls.Started(ctx, callpath.Start{Company: r.co, Agent: r.agent, Caller: caller, Called: "+27210000001", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	r.conv = r.rec.Conversation()
	r.wheel = clock.New(clock.Options{})
	r.wheel.Start()
	t.Cleanup(r.wheel.Stop)
	return r
}

// openaiContractCheck is an openaisim Observe that holds every Realtime event
// either side sends to OpenAI's published schemas.
func openaiContractCheck(t testing.TB) func(openaisim.Direction, []byte) {
	c, err := oaicontract.Load()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var bad []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bad[:min(len(bad), 5)] {
			t.Error(b)
		}
	})
	return func(d openaisim.Direction, msg []byte) {
		check := c.Server
		if d == openaisim.FromClient {
			check = c.Client
		}
		if err := check(msg); err != nil {
			mu.Lock()
			bad = append(bad, err.Error())
			mu.Unlock()
		}
	}
}

// botContractCheck is a mediastreamsim Observe that holds every message to
// the shapes of Twilio's Media Streams reference.
func botContractCheck(t testing.TB) func(mediastreamsim.Direction, []byte) {
	c, err := mscontract.Load()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var bad []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bad[:min(len(bad), 5)] {
			t.Error(b)
		}
	})
	return func(d mediastreamsim.Direction, msg []byte) {
		check := c.Bot
		if d == mediastreamsim.FromGateway {
			check = c.Gateway
		}
		if err := check(msg); err != nil {
			mu.Lock()
			bad = append(bad, err.Error())
			mu.Unlock()
		}
	}
}

// contractCheck is an elevenlabssim Observe that holds every websocket message to
// the AsyncAPI contract; what breaks it fails the test once the simulator is closed.
func contractCheck(t testing.TB) func(elevenlabssim.Direction, []byte) {
	c, err := contract.Load()
	if err != nil {
		t.Fatal(err)
	}
	k := c.Checker()
	t.Cleanup(func() { // runs after the simulator's cleanup: its goroutines are gone
		errs := k.Close()
		for _, err := range errs[:min(len(errs), 5)] {
			t.Error(err)
		}
	})
	return func(d elevenlabssim.Direction, msg []byte) { k.Check(d == elevenlabssim.FromClient, msg) }
}

func (r *rig) info() *callpath.Info {
	return &callpath.Info{ConversationID: r.conv.ID, Company: r.co, Agent: r.agent, Config: store.ParseAgentConfig(r.agent.Config), Record: r.rec, Caller: "+27820000002",
		Called: "+27210000001", SIPCallID: "test-call", Log: r.log, Message: r.message, DynamicVariables: r.vars}
}

// connect opens the provider session and answers the call: media starts towards
// the phone and the session starts playing.
func (r *rig) connect(codec string) {
	r.t.Helper()
	peer, err := r.conn.Connect(context.Background(), r.info())
	if err != nil {
		r.t.Fatalf("connect: %v", err)
	}
	r.sess = peer
	pool, _ := media.NewPortPool(40000+2*int(time.Now().UnixNano()%5000), 59999)
	r.stream, err = media.NewStream(pool, netip.MustParseAddr("127.0.0.1"), media.Options{Logger: r.log, Wheel: r.wheel})
	if err != nil {
		r.t.Fatal(err)
	}
	r.phone = newPhone(r.t, r.stream.LocalAddr(), codec)
	c := sdp.Codec{PayloadType: 0, Name: "PCMU", ClockRate: 8000}
	if codec == "PCMA" {
		c = sdp.Codec{PayloadType: 8, Name: "PCMA", ClockRate: 8000}
	}
	n := sdp.Negotiated{Codec: c, DTMF: sdp.Codec{PayloadType: 101, Name: "telephone-event", ClockRate: 8000}, HasDTMF: true,
		Remote: r.phone.addr(), Direction: sdp.SendRecv}
	if err := r.stream.Start(n, media.Consumer{Format: peer.Format(), Sink: peer.OnAudio, OnDigit: peer.OnDigit}); err != nil {
		r.t.Fatal(err)
	}
	r.call = &testCall{stream: r.stream, answered: time.Now(), hangup: make(chan callpath.Reason, 1), transfers: make(chan string, 4), transferErr: sip.ErrTransferFailed}
	if err := peer.Start(r.call); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { r.end("test_end") })
}

// end closes the call as its supervisor would: peer first, then media.
func (r *rig) end(reason callpath.Reason) {
	if !r.ended.CompareAndSwap(false, true) {
		return
	}
	r.sess.Close(reason)
	r.stream.Close()
	r.rec.Ended(callpath.End{Reason: reason, AnsweredAt: r.call.answered, EndedAt: time.Now()}, r.stream.Stats())
	r.phone.close()
}

// testCall is the callpath.Line the session drives, over a real media stream.
type testCall struct {
	stream   *media.Stream
	answered time.Time
	hangup   chan callpath.Reason
	flushes  atomic.Int64
	// sentAtFlush is how many packets the stream had sent when the last
	// Flush returned: every packet after those was taken from the queue
	// after the flush.
	sentAtFlush atomic.Uint64
	// transfers gets each transfer the session starts; the answer is transferErr.
	transfers   chan string
	transferErr error
	// inTransfer, when set, runs inside Transfer before it answers (as sip's
	// Transfer does its REFER), with Transfer's context.
	inTransfer func(ctx context.Context)
}

func (c *testCall) Play(a []byte) error      { return c.stream.Play(a) }
func (c *testCall) Drained() <-chan struct{} { return c.stream.Drained() }
func (c *testCall) Queued() int              { return c.stream.Queued() }
func (c *testCall) AnsweredAt() time.Time    { return c.answered }
func (c *testCall) Hangup(reason callpath.Reason) {
	select {
	case c.hangup <- reason:
	default:
	}
}
func (c *testCall) Flush() int {
	n := c.stream.Flush()
	c.sentAtFlush.Store(c.stream.Stats().PacketsSent)
	c.flushes.Add(1)
	return n
}
func (c *testCall) Transfer(ctx context.Context, target string, _ bool) error {
	select {
	case c.transfers <- target:
	default:
	}
	if c.inTransfer != nil {
		c.inTransfer(ctx)
	}
	return c.transferErr
}

// rtpPhone is the caller's RTP endpoint.
type rtpPhone struct {
	t     testing.TB
	conn  *net.UDPConn
	to    *net.UDPAddr
	pt    uint8
	seq   uint16
	ts    uint32
	mu    sync.Mutex
	recv  []rx
	wg    sync.WaitGroup
	close func()
}

type rx struct {
	at  time.Time
	seq uint16
	pcm []int16
}

func newPhone(t testing.TB, gw netip.AddrPort, codec string) *rtpPhone {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &rtpPhone{t: t, conn: c, to: net.UDPAddrFromAddrPort(gw), seq: 1000, ts: 5000}
	if codec == "PCMA" {
		p.pt = 8
	}
	var once sync.Once
	p.close = func() { once.Do(func() { c.Close(); p.wg.Wait() }) }
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			pl := buf[12:n]
			pcm := make([]int16, len(pl))
			if buf[1]&0x7f == 8 {
				g711.ALawToPCM(pcm, pl)
			} else {
				g711.ULawToPCM(pcm, pl)
			}
			p.mu.Lock()
			p.recv = append(p.recv, rx{at: time.Now(), seq: binary.BigEndian.Uint16(buf[2:]), pcm: pcm})
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *rtpPhone) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *rtpPhone) packet(pt uint8, marker bool, payload []byte) []byte {
	b := make([]byte, 12+len(payload))
	b[0], b[1] = 0x80, pt
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], p.seq)
	binary.BigEndian.PutUint32(b[4:], p.ts)
	binary.BigEndian.PutUint32(b[8:], 0x1234)
	copy(b[12:], payload)
	p.seq++
	return b
}

// playPCM plays 8 kHz PCM in real time: it hands write the next 160 samples
// (the last frame padded with silence) encoded with enc every 20 ms of the wall
// clock (audiotest.Pace: after a stall every frame that fell due goes at once, so
// the RTP timestamps of the frames keep real time); first marks the first frame.
func playPCM(pcm []int16, enc func(int16) byte, write func(frame []byte, first bool)) {
	frame := make([]byte, 160)
	audiotest.Pace((len(pcm)+159)/160, 20*time.Millisecond, func(n int) {
		off := n * 160
		for i := range frame {
			v := int16(0)
			if off+i < len(pcm) {
				v = pcm[off+i]
			}
			frame[i] = enc(v)
		}
		write(frame, off == 0)
	})
}

// send plays 8 kHz PCM in real time, 20 ms per packet.
func (p *rtpPhone) send(pcm []int16) {
	enc := g711.EncodeULaw
	if p.pt == 8 {
		enc = g711.EncodeALaw
	}
	playPCM(pcm, enc, func(frame []byte, first bool) {
		_, _ = p.conn.WriteToUDP(p.packet(p.pt, first, frame), p.to)
		p.ts += 160
	})
}

// keys sends RFC 4733 events one after the other as a phone's keypad does, each
// 100 ms long in five packets 20 ms apart, all on one clock (audiotest.Pace): a
// stall of the test's goroutine is followed by the packets that fell due, so it
// does not add up over the keys into a pause the gateway would rightly take for
// the end of the entry.
func (p *rtpPhone) keys(evs ...byte) {
	const packets = 5 // per event
	audiotest.Pace(len(evs)*packets, 20*time.Millisecond, func(n int) {
		ev, i := evs[n/packets], n%packets+1
		d := uint16(160 * i)
		pl := []byte{ev, 10, byte(d >> 8), byte(d)}
		if i == packets {
			pl[1] |= 0x80
		}
		_, _ = p.conn.WriteToUDP(p.packet(101, i == 1, pl), p.to)
		if i == packets {
			p.ts += 160 * packets
		}
	})
}

// audioSince is the received audio in arrival order from t on.
func (p *rtpPhone) audioSince(t time.Time) []int16 {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := append([]rx(nil), p.recv...)
	sort.SliceStable(rs, func(i, j int) bool { return int16(rs[i].seq-rs[j].seq) < 0 })
	var out []int16
	for _, r := range rs {
		if !r.at.Before(t) {
			out = append(out, r.pcm...)
		}
	}
	return out
}

func (p *rtpPhone) packets() []rx {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]rx(nil), p.recv...)
}
