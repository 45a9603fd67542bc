package media

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
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

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/rtp"
)

// farmResult is what the phone-farm helper process reports.
type farmResult struct {
	Sent, Received int
}

// TestPhoneFarmHelper is not a test: BenchmarkStreams runs the test binary
// again with CXCO_PHONE_FARM set, so the phones' CPU is not counted as the
// gateway's. It sends 20 ms packets of a tone to every target from a socket
// of its own and counts the echoes.
func TestPhoneFarmHelper(t *testing.T) {
	if os.Getenv("CXCO_PHONE_FARM") == "" {
		t.Skip("helper process for BenchmarkStreams")
	}
	var targets []netip.AddrPort
	for _, s := range strings.Split(os.Getenv("CXCO_FARM_TARGETS"), ",") {
		targets = append(targets, netip.MustParseAddrPort(s))
	}
	secs, _ := strconv.Atoi(os.Getenv("CXCO_FARM_SECONDS"))
	pt, _ := strconv.Atoi(os.Getenv("CXCO_FARM_PT"))
	conns := make([]*net.UDPConn, len(targets))
	var received atomic.Int64
	var wg sync.WaitGroup
	for i := range conns {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
				received.Add(1)
			}
		}()
	}
	pcm := make([]int16, 8000)
	(&audiotest.Tone{Rate: 8000, Freq: 1000, Amplitude: 0.3}).Fill(pcm)
	audio := make([]byte, len(pcm))
	g711.PCMToULaw(audio, pcm)
	if pt == 8 {
		g711.PCMToALaw(audio, pcm)
	}
	pkts := make([][]byte, len(targets))
	for i := range pkts {
		pkts[i] = make([]byte, 12+160)
	}
	sent := 0
	tick := time.NewTicker(20 * time.Millisecond)
	for k := range secs * 50 {
		<-tick.C
		for i, c := range conns {
			p := pkts[i]
			p[0], p[1] = 0x80, byte(pt)
			p[2], p[3] = byte(k>>8), byte(k)
			ts := uint32(k * 160)
			p[4], p[5], p[6], p[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
			p[8], p[9], p[10], p[11] = 0, 0, byte(i>>8), byte(i)
			copy(p[12:], audio[(k%50)*160:])
			if _, err := c.WriteToUDPAddrPort(p, targets[i]); err == nil {
				sent++
			}
		}
	}
	tick.Stop()
	// Let the echo of the last packets come back (jitter depth + pacer).
	time.Sleep(300 * time.Millisecond)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	_ = json.NewEncoder(os.Stdout).Encode(farmResult{Sent: sent, Received: int(received.Load())})
}

func cpuTime() time.Duration { return rusage(syscall.RUSAGE_SELF) }

// switches is this process's context switches, voluntary and not.
func switches() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Nvcsw + ru.Nivcsw
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStreams runs N echo calls over loopback against a phone farm in a
// separate process, for b.N seconds, and reports the gateway side's CPU per
// call-second (this process only: streams, wheel, runtime), allocations per
// frame and memory per call. Run with e.g. -benchtime=10x (10 s);
// CXCO_BENCH_CALLS changes the number of calls; CXCO_BENCH_OWN_READERS=1 has
// every stream read its own sockets with two goroutines (the way before the
// shared readers, and where they are not available); CXCO_BENCH_GO_SYSCALLS=1
// makes the sends and the readers' polls Go system calls (before rawSyscalls);
// CXCO_BENCH_NO_TICK_POLL=1 leaves the reading to the readers' goroutines
// (before pollTick).
func BenchmarkStreams(b *testing.B) {
	calls := []int{100}
	if v, err := strconv.Atoi(os.Getenv("CXCO_BENCH_CALLS")); err == nil && v > 0 {
		calls = []int{v} // e.g. CXCO_BENCH_CALLS=500
	}
	for _, n := range calls {
		for _, tc := range []struct {
			codec  string
			format Format
		}{{"PCMU", FormatULaw8k}, {"PCMA", FormatULaw8k}, {"PCMU", FormatPCM16k}} {
			b.Run(fmt.Sprintf("calls=%d/%s/%s", n, tc.codec, tc.format), func(b *testing.B) {
				benchStreams(b, n, tc.codec, tc.format)
			})
		}
	}
}

func benchStreams(b *testing.B, n int, codec string, format Format) {
	if os.Getenv("CXCO_BENCH_OWN_READERS") != "" { // each stream reads its own sockets, as before the shared readers
		sharedReaders = false
		defer func() { sharedReaders = true }()
	}
	if os.Getenv("CXCO_BENCH_GO_SYSCALLS") != "" { // sendto and epoll_wait as Go system calls, as before rawSyscalls
		rawSyscalls = false
		defer func() { rawSyscalls = true }()
	}
	if os.Getenv("CXCO_BENCH_NO_TICK_POLL") != "" { // only the readers' goroutines read, as before pollTick
		shardPolls = false
		defer func() { shardPolls = true }()
	}
	w := realWheel(b)
	pool := testPool(b)
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	streams := make([]*Stream, n)
	targets := make([]string, n)
	for i := range streams {
		// No address in the SDP: accept the farm's RTP from any source, and
		// send once it latches.
		s, err := NewStream(pool, loopback, Options{Wheel: w, Sources: SourcePolicy{Any: true}})
		if err != nil {
			b.Fatal(err)
		}
		neg := negotiated(codec, netip.AddrPort{})
		if err := s.Start(neg, Echo(s, format)); err != nil {
			b.Fatal(err)
		}
		streams[i] = s
		targets[i] = netip.AddrPortFrom(loopback, uint16(s.LocalPort())).String()
	}
	defer func() {
		for _, s := range streams {
			s.Close()
		}
	}()
	secs := max(b.N, 1)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPhoneFarmHelper$", "-test.v=false")
	pt := 0
	if codec == "PCMA" {
		pt = 8
	}
	cmd.Env = append(os.Environ(), "CXCO_PHONE_FARM=1", "CXCO_FARM_TARGETS="+strings.Join(targets, ","),
		"CXCO_FARM_SECONDS="+strconv.Itoa(secs), "CXCO_FARM_PT="+strconv.Itoa(pt))
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	b.ResetTimer()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	cpu0, farm0, csw0 := cpuTime(), rusage(syscall.RUSAGE_CHILDREN), switches()
	if err := cmd.Run(); err != nil {
		b.Fatalf("phone farm: %v\n%s", err, out.String())
	}
	cpu, farmCPU, csw := cpuTime()-cpu0, rusage(syscall.RUSAGE_CHILDREN)-farm0, switches()-csw0
	b.StopTimer()
	var m2 runtime.MemStats
	runtime.ReadMemStats(&m2)
	var res farmResult
	line := out.String()
	if i := strings.Index(line, "{"); i >= 0 {
		line = line[i:]
	}
	if err := json.NewDecoder(strings.NewReader(line)).Decode(&res); err != nil {
		b.Fatalf("phone farm output %q: %v", out.String(), err)
	}
	var frames, received, lost, concealed, late, resyncs uint64
	var depthMax time.Duration
	for _, s := range streams {
		st := s.Stats()
		frames += st.Frames
		received += st.PacketsReceived
		lost += uint64(max(st.CumulativeLost, 0))
		concealed += st.Concealed
		late += st.Late
		resyncs += st.Resyncs
		depthMax = max(depthMax, st.JitterDepthMax)
	}
	callSeconds := float64(n * secs)
	b.ReportMetric(float64(cpu.Nanoseconds())/callSeconds, "cpu-ns/call-s")
	b.ReportMetric(float64(m2.Mallocs-m1.Mallocs)/float64(frames), "allocs/frame")
	b.ReportMetric(float64((m1.HeapAlloc+m1.StackInuse)-(m0.HeapAlloc+m0.StackInuse))/float64(n), "B/call")
	b.ReportMetric(100*float64(lost)/float64(max(received, 1)), "loss-%")
	b.ReportMetric(100*float64(late)/float64(max(received, 1)), "late-%")
	b.ReportMetric(float64(csw)/callSeconds, "ctxsw/call-s")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d calls x %d s: cpu %v (phone farm %v), frames %d, rtp in %d, lost %d, late %d, resyncs %d, concealed %d (incl. the tail after the farm stops), max depth %v; farm sent %d, received %d (echo and silence); load %s",
		n, secs, cpu, farmCPU, frames, received, lost, late, resyncs, concealed, depthMax, res.Sent, res.Received, loadavg())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)]
}

// BenchmarkLatency measures the gateway's added latency with the real wheel
// over loopback: upstream from an RTP packet's arrival (read from the
// socket) to its frame reaching the consumer, at 0 and 20 ms of injected
// jitter; downstream from Play into an empty queue to the first RTP packet
// of that audio arriving at the phone. b.N is seconds of audio upstream and
// tens of talkspurts downstream.
func BenchmarkLatency(b *testing.B) {
	for _, jit := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("upstream/jitter=%v", jit), func(b *testing.B) { benchUpstream(b, jit) })
	}
	b.Run("downstream/play-to-rtp", benchDownstream)
}

func benchUpstream(b *testing.B, jit time.Duration) {
	w := realWheel(b)
	ph := newPhone(b)
	s, err := NewStream(testPool(b), loopback, Options{Wheel: w})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var (
		mu     sync.Mutex
		lat    []time.Duration
		excess []time.Duration // latency beyond the buffer's depth at delivery
	)
	sink := func(f Frame) {
		if f.Arrival.IsZero() || f.Concealed {
			return
		}
		now := time.Now()
		s.in.mu.Lock()
		depth := s.in.jb.Depth()
		s.in.mu.Unlock()
		mu.Lock()
		lat = append(lat, now.Sub(f.Arrival))
		excess = append(excess, now.Sub(f.Arrival)-depth)
		mu.Unlock()
	}
	if err := s.Start(negotiated("PCMU", ph.addr()), Consumer{Format: FormatULaw8k, Sink: sink}); err != nil {
		b.Fatal(err)
	}
	secs := max(b.N, 2)
	rng := rand.New(rand.NewPCG(1, 2))
	payload := make([]byte, 160)
	var wg sync.WaitGroup
	start := time.Now().Add(10 * time.Millisecond)
	b.ResetTimer()
	for i := range secs * 50 {
		at := start.Add(time.Duration(i)*20*time.Millisecond + time.Duration(rng.Int64N(int64(jit)+1)))
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: 1}, Payload: payload}
		wg.Add(1)
		time.AfterFunc(time.Until(at), func() {
			defer wg.Done()
			ph.send(b, s.LocalAddr(), pkt)
		})
	}
	wg.Wait()
	done := s.Stats().Frames + 10
	for deadline := time.Now().Add(time.Second); s.Stats().Frames < done && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // waiting for the last frames to play out
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	st := s.Stats()
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(percentile(excess, 0.99).Microseconds())/1000, "p99-over-depth-ms")
	b.ReportMetric(float64(st.JitterDepth.Microseconds())/1000, "depth-ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("jitter %v: %d frames, depth %v (max %v), late %d, concealed %d, p50 %v p99 %v, p99 beyond depth %v, max beyond depth %v",
		jit, len(lat), st.JitterDepth, st.JitterDepthMax, st.Late, st.Concealed, percentile(lat, 0.5), percentile(lat, 0.99),
		percentile(excess, 0.99), percentile(excess, 1))
}

func benchDownstream(b *testing.B) {
	w := realWheel(b)
	ph := newPhone(b)
	s, err := NewStream(testPool(b), loopback, Options{Wheel: w})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(negotiated("PCMU", ph.addr()), Consumer{Format: FormatULaw8k}); err != nil {
		b.Fatal(err)
	}
	audio := tone(5*160, 1000)
	rng := rand.New(rand.NewPCG(3, 4))
	var lat []time.Duration
	b.ResetTimer()
	for range max(b.N, 1) * 10 {
		// Start at a random phase of the pacer.
		time.Sleep(40*time.Millisecond + time.Duration(rng.Int64N(int64(20*time.Millisecond))))
		for { // drain silence already received
			if _, ok := ph.recv(time.Microsecond); !ok {
				break
			}
		}
		t0 := time.Now()
		if err := s.Play(audio); err != nil {
			b.Fatal(err)
		}
		for {
			p, ok := ph.recv(time.Second)
			if !ok {
				b.Fatal("no audio packet")
			}
			if !isSilence(p.Payload, g711.ULawSilence) {
				lat = append(lat, time.Since(t0))
				break
			}
		}
		<-s.Drained()
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("play to first RTP over %d talkspurts: p50 %v p99 %v max %v", len(lat), percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 1))
}

var _ = sdp.SendRecv
