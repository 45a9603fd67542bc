package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sample is one look at the gateway, every second.
type sample struct {
	at         time.Time
	cpu        time.Duration
	rss        int64
	active     float64
	msgIn      float64
	msgOut     float64
	goroutines float64
	heap       float64 // go_memstats_heap_alloc_bytes: live heap and garbage not yet collected
	stacks     float64 // go_memstats_stack_inuse_bytes
	threads    int
	others     time.Duration // CPU of SIPp, the simulator, Redis and dumpcap together
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, c *config) (*summary, error) {
	logf("work directory %s; load average %s", c.workDir, loadavg())
	for _, tool := range []string{"sipp", "dumpcap"} {
		if tool == "dumpcap" && !c.capture {
			continue
		}
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found (deploy/loadtest/run.sh installs it)", tool)
		}
	}
	if c.store == "redis" {
		if _, err := exec.LookPath("redis-server"); err != nil {
			return nil, errors.New("redis-server not found (deploy/loadtest/run.sh installs it; or -store embedded)")
		}
	}
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(syscall.SIGTERM, 15*time.Second)
		}
	}()

	// The binary.
	bin := c.binary
	if bin == "" {
		bin = filepath.Join(c.workDir, "cxco")
		logf("building ./cmd/cxco")
		b := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cxco")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/cxco (run from the repository root): %w", err)
		}
	}

	// Redis, the simulator, the gateway: each its own process, all on 127.0.0.1.
	redisURL := ""
	if c.store == "redis" {
		port := freePort(false)
		p, err := startProc(c.workDir, "redis", nil, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--dir", c.workDir)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		if !p.waitLine("Ready to accept connections", 10*time.Second) {
			return nil, fmt.Errorf("redis-server did not start: %s", p.tail(5))
		}
		redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	}
	simPort := freePort(false)
	sim, err := startProc(c.workDir, "providersim", nil, bin, "providersim", "--listen", fmt.Sprintf("127.0.0.1:%d", simPort), "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	procs = append(procs, sim)
	if !sim.waitLine("listening", 10*time.Second) {
		return nil, fmt.Errorf("providersim did not start: %s", sim.tail(5))
	}
	httpPort, sipPort, pprofPort := freePort(false), freePort(true), freePort(false)
	agencyKey := "cxco_agcy_k_loadtest0000000000000000000000"
	args := []string{"serve", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--sip", fmt.Sprintf("127.0.0.1:%d", sipPort),
		"--public-ip", "127.0.0.1", "--rtp-ports", c.rtpPorts, "--agency-key", agencyKey,
		"--secret-key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
		"--provider-url", fmt.Sprintf("http://127.0.0.1:%d", simPort), "--provider-api-key", "loadtest-platform-key",
		"--openai-url", fmt.Sprintf("http://127.0.0.1:%d", simPort), "--bot-allow-insecure",
		"--max-calls", strconv.Itoa(c.concurrency + 100), "--pprof", fmt.Sprintf("127.0.0.1:%d", pprofPort),
		"--trunk-allow", "127.0.0.1/32", "--log-level", c.logLevel, "--log-format", "json", "--drain-timeout", "5s",
		// Every codec and SRTP when offered: the callers choose (a G.711 offer
		// gets G.711 in the clear, as before).
		"--trunk-codecs", "PCMU,PCMA,G722,opus", "--trunk-srtp", "optional"}
	if redisURL != "" {
		args = append(args, "--redis", redisURL)
	}
	c.simURL = fmt.Sprintf("http://127.0.0.1:%d", simPort)
	env := []string{"CXCO_OPENAI_API_KEY=loadtest-openai-key"}
	if c.gogc != "" {
		env = append(env, "GOGC="+c.gogc)
	}
	if c.gomaxprocs != "" {
		env = append(env, "GOMAXPROCS="+c.gomaxprocs)
	}
	gw, err := startProc(c.workDir, "gateway", env, bin, args...)
	if err != nil {
		return nil, err
	}
	procs = append(procs, gw)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if err := waitHTTP(ctx, base+"/healthz", 30*time.Second); err != nil {
		return nil, fmt.Errorf("gateway: %w\n%s", err, gw.tail(10))
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	a := &api{base: base, hc: hc}
	logf("gateway pid %d up: API %s, SIP 127.0.0.1:%d, RTP %s, store %s, simulator pid %d", gw.pid(), base, sipPort, c.rtpPorts, c.store, sim.pid())

	t, err := provision(ctx, a, agencyKey, c)
	if err != nil {
		return nil, fmt.Errorf("provisioning: %w", err)
	}
	if c.echo {
		logf("provisioned a company, a user and %d echo lines on %s", c.agents, strings.Join(t.numbers, ", "))
	} else {
		logf("provisioned a company, a user and %d %s agents on %s", c.agents, c.format, strings.Join(t.numbers, ", "))
	}

	// The callers: PCMA and PCMU shares of the calls, rate and concurrency.
	var callers []*caller
	nA := int(math.Round(float64(c.calls) * c.pcma))
	split := []struct {
		codec string
		pt    uint8
		n     int
	}{{"PCMU", 0, c.calls - nA}, {"PCMA", 8, nA}}
	if c.codec != "" {
		split = split[:1]
		split[0].codec, split[0].n = c.codec, c.calls
	}
	for _, cc := range split {
		if cc.n == 0 {
			continue
		}
		share := float64(cc.n) / float64(c.calls)
		s := &caller{codec: cc.codec, pt: cc.pt, calls: cc.n, rate: math.Max(0.1, c.rate*share),
			limit: max(1, int(math.Round(float64(c.concurrency)*share))), dir: filepath.Join(c.workDir, "sipp-"+strings.ToLower(cc.codec)),
			sipPort: freePort(true), rtpLo: c.sippLo + 2000*len(callers), rtpHi: c.sippLo + 2000*len(callers) + 1999,
			goCaller: c.codec != "", srtp: c.srtp}
		if err := s.prepare(c, t.numbers); err != nil {
			return nil, err
		}
		callers = append(callers, s)
	}

	// The capture: only our callers' RTP (their port range) to and from the gateway's range.
	var capProc *proc
	capFile := filepath.Join(c.workDir, "rtp.pcap")
	if c.capture {
		filter := fmt.Sprintf("udp and portrange %d-%d and portrange %d-%d", c.rtpLo, c.rtpHi, c.sippLo, c.sippLo+3999)
		capProc, err = startProc(c.workDir, "dumpcap", nil, "dumpcap", "-i", "lo", "-f", filter, "-s", "64", "-B", "64",
			"-P", "-w", capFile, "-q")
		if err != nil {
			return nil, err
		}
		procs = append(procs, capProc)
		if !waitFileLine(capProc.log, "Capturing on", 10*time.Second) {
			return nil, fmt.Errorf("dumpcap did not start: %s", capProc.tail(5))
		}
	}

	// Idle: the gateway with everything provisioned and no call.
	var idle []int64
	for range 3 {
		if r, err := procRSS(gw.pid()); err == nil {
			idle = append(idle, r)
		}
		time.Sleep(300 * time.Millisecond)
	}
	m0, err := scrape(ctx, hc, base+"/metrics")
	if err != nil {
		return nil, err
	}

	// Sampling, the steady window (all calls up), the API probe and profiles in it.
	target := float64(min(c.concurrency, c.calls))
	threshold := math.Ceil(0.98 * target)
	var (
		smu      sync.Mutex
		samples  []sample
		winStart = make(chan struct{})
		winEnd   = make(chan struct{})
	)
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		reached := time.Time{}
		started, ended := false, false
		for {
			cpu, _ := procCPU(gw.pid())
			rss, _ := procRSS(gw.pid())
			m, err := scrape(ctx, hc, base+"/metrics")
			s := sample{at: time.Now(), cpu: cpu, rss: rss, threads: procThreads(gw.pid())}
			for _, p := range procs {
				if p != gw {
					o, _ := procCPU(p.pid())
					s.others += o
				}
			}
			for _, cl := range callers {
				if cl.proc != nil {
					o, _ := procCPU(cl.proc.pid())
					s.others += o
				}
			}
			if err == nil {
				s.active = m["cxco_calls_active"]
				s.msgIn = m[`cxco_provider_messages_total{direction="in"}`]
				s.msgOut = m[`cxco_provider_messages_total{direction="out"}`]
				s.goroutines = m["go_goroutines"]
				s.heap, s.stacks = m["go_memstats_heap_alloc_bytes"], m["go_memstats_stack_inuse_bytes"]
			}
			smu.Lock()
			samples = append(samples, s)
			smu.Unlock()
			switch {
			case !started && reached.IsZero() && s.active >= threshold:
				reached = s.at
			case !started && !reached.IsZero() && s.at.Sub(reached) >= c.settle:
				started = true
				close(winStart)
			case started && !ended && s.active < threshold:
				ended = true
				close(winEnd)
			}
			select {
			case <-ctx.Done():
				return
			case <-sampleDone:
				return
			case <-tk.C:
			}
			if allExited(callers) && s.active == 0 {
				if started && !ended {
					close(winEnd)
				}
				return
			}
		}
	}()

	for _, s := range callers {
		if err := s.start(c, sipPort); err != nil {
			return nil, err
		}
	}
	callee := c.format + " agents"
	if c.echo {
		callee = "echo lines"
	}
	if c.codec != "" {
		enc := "RTP"
		if c.srtp {
			enc = "SRTP"
		}
		logf("Go caller: %d calls at %.1f/s, at most %d at once, held %s, %s over %s, %s", c.calls, c.rate, c.concurrency, c.hold, c.codec, enc, callee)
	} else {
		logf("SIPp: %d calls at %.1f/s, at most %d at once, held %s, %d%% PCMA, %s", c.calls, c.rate, c.concurrency, c.hold, int(100*c.pcma), callee)
	}

	var probe *apiProbe
	var profErr error
	winLoad := ""
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		select {
		case <-winStart:
		case <-ctx.Done():
			return
		case <-sampleDone:
			return
		}
		winLoad = loadavg()
		logf("steady window: %d calls up; load average %s", int(target), winLoad)
		stopProbe := make(chan struct{})
		var wg sync.WaitGroup
		if c.profile {
			wg.Add(1)
			go func() {
				defer wg.Done()
				secs := max(2, min(30, int((c.hold-time.Duration(target/c.rate*float64(time.Second))-c.settle-4*time.Second).Seconds())))
				profErr = fetchProfiles(ctx, pprofPort, c.workDir, secs)
			}()
		}
		go func() {
			select {
			case <-winEnd:
			case <-sampleDone:
			case <-ctx.Done():
			}
			close(stopProbe)
		}()
		probe = runAPIProbe(ctx, a, t.userKey, c.apiRate, c.apiWorkers, stopProbe)
		wg.Wait()
	}()

	for _, s := range callers {
		select {
		case <-s.proc.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("time limit reached with SIPp still running: %w", ctx.Err())
		}
		if ee, ok := s.proc.err.(*exec.ExitError); ok {
			s.exitCode = ee.ExitCode()
		}
	}
	logf("SIPp done; waiting for the gateway to record the last calls")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		m, err := scrape(ctx, hc, base+"/metrics")
		if err == nil && m["cxco_calls_active"] == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	select {
	case <-sampleDone:
	case <-time.After(5 * time.Second):
	}
	<-probeDone
	if profErr != nil {
		logf("profiles: %v", profErr)
	}
	if capProc != nil {
		time.Sleep(500 * time.Millisecond) // the last packets
		capProc.stop(syscall.SIGTERM, 10*time.Second)
	}
	m1, err := scrape(ctx, hc, base+"/metrics")
	if err != nil {
		return nil, err
	}

	// The summary.
	sum := &summary{Config: c.describe(), Load: loadavg(), Machine: machine(), WorkDir: c.workDir}
	sum.LoadAtStart, sum.LoadInWindow = loadAtStart, winLoad
	for _, s := range callers {
		st, err := s.results()
		if err != nil {
			logf("SIPp %s: %v", s.codec, err)
		}
		sum.addSIPp(s.codec, st, s.exitCode)
	}
	smu.Lock()
	sum.addSamples(samples, idle, m0, threshold)
	smu.Unlock()
	sum.addMetrics(m0, m1)
	if probe != nil {
		sum.addProbe(probe)
	}
	if c.echo {
		if err := sum.addEndLogs(filepath.Join(c.workDir, "gateway.log")); err != nil {
			logf("the gateway's call-end logs: %v", err)
		}
	} else if err := sum.addRecords(ctx, a, t.userKey); err != nil {
		logf("conversation records: %v", err)
	}
	if c.capture {
		up, down, err := captureStats(capFile, c.rtpLo, c.rtpHi)
		if err != nil {
			logf("capture: %v", err)
		} else {
			sum.Capture = &captureSummary{Up: up, Down: down, Dropped: dumpcapDropped(capProc.log)}
		}
		if !c.keep {
			os.Remove(capFile)
		}
	}
	if c.profile {
		sum.Profiles = filepath.Join(c.workDir, "cpu.pprof") + ", " + filepath.Join(c.workDir, "allocs.pprof")
	}
	gw.stop(syscall.SIGTERM, 15*time.Second)
	return sum, nil
}

var loadAtStart = loadavg()

func allExited(cs []*caller) bool {
	for _, s := range cs {
		if s.proc == nil || !s.proc.exited() {
			return false
		}
	}
	return true
}

func waitFileLine(path, s string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}

// dumpcapDropped reads the capture's own drop count from dumpcap's last words.
func dumpcapDropped(log string) string {
	b, _ := os.ReadFile(log)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "dropped") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// fetchProfiles takes a CPU profile of secs seconds and the allocation profile.
func fetchProfiles(ctx context.Context, port int, dir string, secs int) error {
	hc := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	get := func(path, file string) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
		res, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, res.Body)
		return err
	}
	if err := get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "cpu.pprof"); err != nil {
		return err
	}
	return get("/debug/pprof/allocs", "allocs.pprof")
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	gov, _ := exec.Command("go", "env", "GOVERSION").Output()
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s", numCPU(), model, strings.TrimSpace(string(rel)), strings.TrimSpace(string(gov)))
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

func median(v []float64) float64 { return percentile(append([]float64(nil), v...), 0.5) }

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
