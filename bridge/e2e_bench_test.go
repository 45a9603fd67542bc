package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/bridge/elevenlabs"
	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/callpath/callstore"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/sdp"
	"github.com/cxco/gateway/store"
)

// The media path end to end in one process: N calls, each an RTP stream (jitter
// buffer, G.711, resampler, pacer on the shared wheel) bridged by a provider Session
// (websocket client) to the provider simulator over a real websocket on loopback, and
// back. The callers and the simulator run in a helper process (this test binary run
// again as TestMediaPathFarmHelper), so this process's CPU is the gateway's alone.

// e2eResult is what the farm helper reports.
type e2eResult struct {
	Sent, Received int
	Loud           int       // received packets with audio (the simulator's speech)
	DownMS         []float64 // a response's first audio message written -> its first RTP packet at the phone
}

// TestMediaPathFarmHelper is not a test: BenchmarkMediaPath runs the test binary again
// with CXCO_E2E_FARM set. It serves the provider simulator (printing "SIM <url>"), then
// reads "<seconds> <payload type> <port>,<port>,..." from stdin and plays one caller per
// port: 20 ms packets of talk (1.2 s of two tones) and silence (1.8 s), over and over.
func TestMediaPathFarmHelper(t *testing.T) {
	if os.Getenv("CXCO_E2E_FARM") == "" {
		t.Skip("helper process for BenchmarkMediaPath")
	}
	sim := elevenlabssim.New(elevenlabssim.Options{AnalysisDelay: -1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &tapListener{Listener: ln}
	hs := &httptest.Server{Listener: tl, Config: &http.Server{Handler: sim}}
	hs.Start()
	defer hs.Close()
	defer sim.Close()
	fmt.Printf("SIM %s\n", hs.URL)

	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		t.Fatal("no targets")
	}
	f := strings.Fields(in.Text())
	secs, _ := strconv.Atoi(f[0])
	pt, _ := strconv.Atoi(f[1])
	var targets []netip.AddrPort
	for _, s := range strings.Split(f[2], ",") {
		targets = append(targets, netip.MustParseAddrPort(s))
	}
	const talk, period = 60, 150 // frames: 1.2 s of talk in every 3 s
	frames := make([][]byte, period)
	for k := range frames {
		pcm := make([]int16, 160)
		if k < talk {
			for i := range pcm {
				x := float64(k*160+i) / 8000
				pcm[i] = int16(5000 * (math.Sin(2*math.Pi*440*x) + 0.5*math.Sin(2*math.Pi*1100*x)))
			}
		}
		frames[k] = make([]byte, 160)
		if pt == 8 {
			g711.PCMToALaw(frames[k], pcm)
		} else {
			g711.PCMToULaw(frames[k], pcm)
		}
	}
	type phone struct {
		c     *net.UDPConn
		spurt []time.Time // arrivals of packets with the marker bit: a talkspurt's first
	}
	phones := make([]*phone, len(targets))
	var res e2eResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range phones {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadBuffer(1 << 20)
		p := &phone{c: c}
		phones[i] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			pcm := make([]int16, 160)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if n < 12+160 {
					continue
				}
				at := time.Now()
				if buf[1]&0x7f == 8 {
					g711.ALawToPCM(pcm, buf[12:n])
				} else {
					g711.ULawToPCM(pcm, buf[12:n])
				}
				loud := false
				for _, v := range pcm {
					if v > 800 || v < -800 {
						loud = true
						break
					}
				}
				mu.Lock()
				res.Received++
				if loud {
					res.Loud++
				}
				if buf[1]&0x80 != 0 {
					p.spurt = append(p.spurt, at)
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	pkt := make([]byte, 12+160)
	for k := range secs * 50 {
		<-tick.C
		for i, p := range phones {
			pkt[0], pkt[1] = 0x80, byte(pt)
			binary.BigEndian.PutUint16(pkt[2:], uint16(k))
			binary.BigEndian.PutUint32(pkt[4:], uint32(k*160))
			binary.BigEndian.PutUint32(pkt[8:], uint32(i+1))
			copy(pkt[12:], frames[k%period])
			if _, err := p.c.WriteToUDPAddrPort(pkt, targets[i]); err == nil {
				res.Sent++
			}
		}
	}
	tick.Stop()
	time.Sleep(300 * time.Millisecond) // the last echoes
	for _, p := range phones {
		p.c.Close()
	}
	wg.Wait()
	// Downstream latency: each response's first audio message (after 2 s of warm-up)
	// to the first packet of the talkspurt it starts (the pacer marks it) at that
	// call's phone.
	tl.mu.Lock()
	for i, starts := range tl.starts {
		if i >= len(phones) {
			break
		}
		for _, s := range starts {
			if s.Sub(start) < 2*time.Second {
				continue
			}
			j, _ := slices.BinarySearchFunc(phones[i].spurt, s, func(a, b time.Time) int { return a.Compare(b) })
			if j < len(phones[i].spurt) {
				if d := phones[i].spurt[j].Sub(s); d < 500*time.Millisecond {
					res.DownMS = append(res.DownMS, float64(d.Microseconds())/1000)
				}
			}
		}
	}
	tl.mu.Unlock()
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// tapListener numbers the simulator's conversation sockets in the order their
// conversation_initiation_metadata goes out (the benchmark connects the calls one
// by one, so that is call order) and notes when each response's first audio
// message is written.
type tapListener struct {
	net.Listener
	mu     sync.Mutex
	n      int
	starts [][]time.Time
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, l: l, idx: -1}, nil
}

type tapConn struct {
	net.Conn
	l         *tapListener
	idx       int
	lastAudio time.Time
}

var (
	metaMark  = []byte(`"conversation_initiation_metadata"`)
	audioMark = []byte(`"audio_event"`)
)

func (c *tapConn) Write(p []byte) (int, error) {
	now := time.Now()
	switch {
	case c.idx < 0 && bytes.Contains(p, metaMark):
		c.l.mu.Lock()
		c.idx = c.l.n
		c.l.n++
		c.l.starts = append(c.l.starts, nil)
		c.l.mu.Unlock()
	case c.idx >= 0 && bytes.Contains(p, audioMark):
		if now.Sub(c.lastAudio) > time.Second { // a new response (they are 3 s apart)
			c.l.mu.Lock()
			c.l.starts[c.idx] = append(c.l.starts[c.idx], now)
			c.l.mu.Unlock()
		}
		c.lastAudio = now
	}
	return c.Conn.Write(p)
}

// BenchmarkMediaPath runs N bridged calls for b.N seconds (e.g. -benchtime 20x) and
// reports this process's CPU per call-second (media, bridge, websocket client, the
// wheel, the runtime: everything but the callers and the simulator), allocations per
// 20 ms frame (inbound frames plus outbound packets), heap and stacks per call, RTP
// loss, and the added latency upstream (RTP arrival to websocket write, next to the
// jitter buffer's depth) and downstream (the simulator's audio message to the first
// RTP packet at the phone). CXCO_BENCH_CALLS sets N (default 100).
//
//	go test -run '^$' -bench MediaPath -benchtime 20x ./bridge/
//	CXCO_BENCH_CALLS=500 go test -run '^$' -bench 'MediaPath/ulaw' -benchtime 30x ./bridge/
func BenchmarkMediaPath(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("CXCO_BENCH_CALLS")); err == nil && v > 0 {
		n = v
	}
	for _, tc := range []struct{ format, codec string }{
		{store.FormatULaw8000, "PCMU"}, {store.FormatULaw8000, "PCMA"}, {store.FormatPCM16000, "PCMU"},
	} {
		b.Run(fmt.Sprintf("%s/%s/calls=%d", tc.format, tc.codec, n), func(b *testing.B) {
			benchMediaPath(b, n, tc.format, tc.codec)
		})
	}
}

func benchMediaPath(b *testing.B, n int, format, codec string) {
	secs := max(b.N, 3)
	ctx := context.Background()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMediaPathFarmHelper$", "-test.v=false")
	cmd.Env = append(os.Environ(), "CXCO_E2E_FARM=1")
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SIM ") {
		b.Fatalf("farm: %q %v", line, err)
	}
	simURL := strings.TrimSpace(strings.TrimPrefix(line, "SIM "))

	log := testLogger()
	sealer, _ := store.NewSealer(store.GenerateSecretKey())
	st, err := store.Open(ctx, store.Options{Sealer: sealer, Logger: log}) // embedded
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	prov := &elevenlabs.Provisioner{Client: elevenlabs.NewClient(simURL), Store: st, PlatformKey: "k", Log: log}
	var (
		upMu   sync.Mutex
		up     []time.Duration
		beyond []time.Duration // from the jitter buffer's release to the websocket
		upOn   atomic.Bool
	)
	el := &elevenlabs.Provider{Provisioner: prov, Log: log, AnalysisRetry: time.Second}
	conn := &bridge.Connector{Providers: map[string]bridge.Provider{el.Slug(): el}, Log: log,
		OnUpstream: func(d, fromPlayout time.Duration) {
			if upOn.Load() {
				upMu.Lock()
				up = append(up, d)
				beyond = append(beyond, fromPlayout)
				upMu.Unlock()
			}
		}}
	defer conn.Close()
	records := callstore.New(st, log)
	co, _, err := st.CreateCompany(ctx, "Bench", "enterprise", nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.AddNumber(ctx, "+27210000001", "ZA", "sip_trunk", false); err != nil {
		b.Fatal(err)
	}
	a, err := st.CreateAgent(ctx, store.Agent{CompanyID: co.ID, Name: "Bench", Personality: "You echo.", OpeningLine: "Hello.",
		VoiceID: 1, Language: "en", Config: map[string]any{"audio_format": format}})
	if err != nil {
		b.Fatal(err)
	}
	agent, err := st.PublishAgent(ctx, co.ID, a.ID, "ZA", prov.CreateAgent, func(context.Context, store.ProviderAgent) {})
	if err != nil {
		b.Fatal(err)
	}
	wheel := clock.New(clock.Options{})
	wheel.Start()
	defer wheel.Stop()
	pool, err := media.NewPortPool(30000+2*int(time.Now().UnixNano()%4000), 45999)
	if err != nil {
		b.Fatal(err)
	}
	neg := sdp.Negotiated{Codec: sdp.Codec{PayloadType: 0, Name: "PCMU", ClockRate: 8000}, Direction: sdp.SendRecv}
	if codec == "PCMA" {
		neg.Codec = sdp.Codec{PayloadType: 8, Name: "PCMA", ClockRate: 8000}
	}

	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	type call struct {
		sess   callpath.Peer
		stream *media.Stream
	}
	calls := make([]call, n)
	targets := make([]string, n)
	for i := range calls {
		rec, err := records.Started(ctx, callpath.Start{Company: co, Agent: agent, Caller: "+27820000002", Called: "+27210000001"})
		if err != nil {
			b.Fatal(err)
		}
		info := &callpath.Info{ConversationID: rec.Conversation().ID, Company: co, Agent: agent, Config: store.ParseAgentConfig(agent.Config),
			Caller: "+27820000002", Called: "+27210000001", SIPCallID: fmt.Sprintf("bench-%d", i), Record: rec, Log: log}
		sess, err := conn.Connect(ctx, info)
		if err != nil {
			b.Fatalf("call %d: %v", i, err)
		}
		// No address in the SDP: accept the callers' RTP from any source.
		s, err := media.NewStream(pool, netip.MustParseAddr("127.0.0.1"), media.Options{Logger: log, Wheel: wheel, Sources: media.SourcePolicy{Any: true}})
		if err != nil {
			b.Fatal(err)
		}
		// No remote address: the stream sends once the caller's RTP latches it.
		if err := s.Start(neg, media.Consumer{Format: sess.Format(), Sink: sess.OnAudio, OnDigit: sess.OnDigit}); err != nil {
			b.Fatal(err)
		}
		if err := sess.Start(&testCall{stream: s, answered: time.Now(), hangup: make(chan callpath.Reason, 1)}); err != nil {
			b.Fatal(err)
		}
		calls[i] = call{sess, s}
		targets[i] = s.LocalAddr().String()
	}
	defer func() {
		for _, c := range calls {
			if c.sess != nil {
				c.sess.Close("bench_end")
				c.stream.Close()
			}
		}
	}()
	var mSetup runtime.MemStats
	runtime.ReadMemStats(&mSetup)
	pt := 0
	if codec == "PCMA" {
		pt = 8
	}
	time.AfterFunc(2*time.Second, func() { upOn.Store(true) }) // the jitter buffers settle
	b.ResetTimer()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	cpu0 := benchCPU()
	fmt.Fprintf(stdin, "%d %d %s\n", secs, pt, strings.Join(targets, ","))
	var res e2eResult
	if err := json.NewDecoder(out).Decode(&res); err != nil {
		b.Fatalf("farm result: %v", err)
	}
	cpu := benchCPU() - cpu0
	var m2 runtime.MemStats
	runtime.ReadMemStats(&m2)
	b.StopTimer()
	var frames, packetsIn, lost, late, concealed uint64
	var depths []float64
	for _, c := range calls {
		s := c.stream.Stats()
		frames += s.Frames + s.PacketsSent
		packetsIn += s.PacketsReceived
		lost += uint64(max(s.CumulativeLost, 0))
		late += s.Late
		concealed += s.Concealed
		depths = append(depths, float64(s.JitterDepth.Microseconds())/1000)
	}
	upMu.Lock()
	upMS := make([]float64, len(up))
	for i, d := range up {
		upMS[i] = float64(d.Microseconds()) / 1000
	}
	beyondMS := make([]float64, len(beyond))
	for i, d := range beyond {
		beyondMS[i] = float64(d.Microseconds()) / 1000
	}
	upMu.Unlock()
	callSec := float64(n * secs)
	b.ReportMetric(float64(cpu.Microseconds())/1000/callSec, "cpu-ms/call-s")
	b.ReportMetric(float64(m2.Mallocs-m1.Mallocs)/float64(max(frames, 1)), "allocs/frame")
	b.ReportMetric(float64((mSetup.HeapAlloc+mSetup.StackInuse)-(m0.HeapAlloc+m0.StackInuse))/float64(n)/1024, "KiB/call")
	b.ReportMetric(100*float64(res.Sent-int(packetsIn)+int(late))/float64(max(res.Sent, 1)), "up-loss-%")
	b.ReportMetric(quantile(upMS, 0.5), "up-p50-ms")
	b.ReportMetric(quantile(upMS, 0.99), "up-p99-ms")
	b.ReportMetric(quantile(depths, 0.5), "depth-ms")
	b.ReportMetric(quantile(beyondMS, 0.5), "up-beyond-depth-p50-ms")
	b.ReportMetric(quantile(beyondMS, 0.99), "up-beyond-depth-p99-ms")
	b.ReportMetric(quantile(res.DownMS, 0.5), "down-p50-ms")
	b.ReportMetric(quantile(res.DownMS, 0.99), "down-p99-ms")
	b.ReportMetric(0, "ns/op")
	st2 := conn.Stats()
	b.Logf("%d calls x %d s (%s, %s): cpu %v; rtp sent %d, gateway received %d, late %d, lost %d, concealed %d; phones got %d (%d with audio); "+
		"upstream %d chunks, downstream %d responses; websocket messages out %d in %d; load %s",
		n, secs, format, codec, cpu, res.Sent, packetsIn, late, lost, concealed, res.Received, res.Loud,
		len(upMS), len(res.DownMS), st2.MessagesOut.Load(), st2.MessagesIn.Load(), benchLoad())
}

func benchCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchLoad() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

func quantile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[max(0, min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1))]
}
