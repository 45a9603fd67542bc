package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

// kamailioConfig is the shipped Kamailio config; tests run it as it is, with the
// deployment's values passed as -A defines.
func kamailioConfig() string {
	return filepath.Join(cxcotest.RepoRoot(), "deploy", "kamailio", "kamailio.cfg")
}

// kamailioBinary finds kamailio (it lives in /usr/sbin, not always on PATH). It
// fails, never skips: deploy/test.sh installs it.
func kamailioBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("kamailio"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/kamailio", "/usr/local/sbin/kamailio"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("kamailio not found: install it with `apt-get install -y kamailio` (deploy/test.sh does this)")
	return ""
}

// kamailioDefines are the -A arguments for a test instance on loopback; each
// override ("NAME=value") replaces a default (Kamailio refuses a define twice).
func kamailioDefines(port int, dsList string, overrides ...string) []string {
	defs := [][2]string{
		{"SIP_IP", "127.0.0.1"}, {"SIP_PORT", strconv.Itoa(port)}, {"DS_LIST", strconv.Quote(dsList)},
		{"DS_PING_INTERVAL", "1"}, {"DS_PROBING_THRESHOLD", "1"}, {"DS_INACTIVE_THRESHOLD", "1"}, {"TRUNK_ALLOW", `"127.0.0.0/8"`},
		{"CHILDREN", "2"}, {"TCP_CHILDREN", "1"},
	}
	for _, o := range overrides {
		name, val, _ := strings.Cut(o, "=")
		found := false
		for i := range defs {
			if defs[i][0] == name {
				defs[i][1], found = val, true
			}
		}
		if !found {
			defs = append(defs, [2]string{name, val})
		}
	}
	var args []string
	for _, d := range defs {
		args = append(args, "-A", d[0]+"="+d[1])
	}
	return args
}

// TestKamailioConfigCheck: `kamailio -c` accepts the shipped config with its
// defaults, with the values the scale-out test uses, behind NAT (advertise) and
// with hashing over Call-ID; and rejects a broken define, so the check means something.
func TestKamailioConfigCheck(t *testing.T) {
	bin := kamailioBinary(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "dispatcher.list")
	if err := os.WriteFile(list, []byte("1 sip:127.0.0.1:5071 0 0\n1 sip:127.0.0.1:5072 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		defines []string
		ok      bool
	}{
		{"defaults", nil, true},
		{"test instance", kamailioDefines(5070, list), true},
		{"behind NAT", []string{"-A", "ADVERTISE_IP=203.0.113.10", "-A", "ADVERTISE_PORT=5060"}, true},
		{"hash over Call-ID", []string{"-A", "DS_ALG=0", "-A", "DS_PING_INTERVAL=10", "-A", "DS_PROBING_THRESHOLD=3"}, true},
		{"trunk allow-list", []string{"-A", `TRUNK_ALLOW="203.0.113.0/24,198.51.100.7/32"`}, true},
		{"two-legged", []string{"-A", "SIP_IP=127.0.0.2", "-A", "INTERNAL_IP=127.0.0.1", "-A", "INTERNAL_PORT=5080"}, true},
		{"broken define", []string{"-A", "SIP_PORT=not-a-port"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-c", "-f", kamailioConfig()}, tc.defines...)
			out, err := exec.Command(bin, args...).CombinedOutput()
			if (err == nil) != tc.ok {
				t.Fatalf("kamailio -c %v: err %v, want ok=%v\n%s", tc.defines, err, tc.ok, out)
			}
		})
	}
}

// kamailio is a Kamailio started for one test, in the foreground, with its
// runtime files in a temp dir.
type kamailio struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    strings.Builder
	logged chan struct{} // closed (and replaced) when a log line arrives
	done   chan struct{}
	Addr   string
}

// startKamailio runs the shipped config in front of gateway nodes (SIP ports on
// 127.0.0.1, dispatcher set 1).
func startKamailio(t *testing.T, nodes []int) *kamailio {
	t.Helper()
	var list strings.Builder
	for i, p := range nodes {
		fmt.Fprintf(&list, "1 sip:127.0.0.1:%d 0 0 duid=gw%d\n", p, i)
	}
	return startKamailioList(t, list.String())
}

// startKamailioList runs the shipped config with a dispatcher list and define
// overrides ("NAME=value").
func startKamailioList(t *testing.T, list string, overrides ...string) *kamailio {
	t.Helper()
	bin := kamailioBinary(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run") // -Y: pid file and the ctl socket
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	dsList := filepath.Join(dir, "dispatcher.list")
	if err := os.WriteFile(dsList, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	port := cxcotest.FreeUDPPort(t)
	args := append([]string{"-f", kamailioConfig(), "-DD", "-E", "-Y", run, "-P", filepath.Join(run, "kamailio.pid")},
		kamailioDefines(port, dsList, overrides...)...)
	ip := "127.0.0.1"
	for _, o := range overrides {
		if v, ok := strings.CutPrefix(o, "SIP_IP="); ok {
			ip = v
		}
	}
	return runKamailio(t, bin, args, fmt.Sprintf("%s:%d", ip, port))
}

// runKamailio starts kamailio with args in the foreground, keeps its log, stops it
// when the test ends, and returns once it answers OPTIONS on addr (UDP).
func runKamailio(t *testing.T, bin string, args []string, addr string) *kamailio {
	t.Helper()
	k := &kamailio{cmd: exec.Command(bin, args...), logged: make(chan struct{}), done: make(chan struct{}), Addr: addr}
	// Its own process group: if the main process dies hard, its children are
	// still ours to end.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := k.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	k.cmd.Stdout = k.cmd.Stderr
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k.mu.Lock()
			k.log.WriteString(sc.Text() + "\n")
			close(k.logged)
			k.logged = make(chan struct{})
			k.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pipe)
		_ = k.cmd.Wait()
		close(k.done)
	}()
	t.Cleanup(func() {
		// SIGTERM ends Kamailio's children too; the group kill is the fallback.
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
			<-k.done
		}
		if t.Failed() {
			t.Logf("kamailio log (tail):\n%s", lastLines(k.Log(), 80))
		}
	})
	// Up when it answers an OPTIONS (the config answers keepalives itself).
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, err := sipOptions(k.Addr)
		if code == 200 {
			break
		}
		select {
		case <-k.done:
			t.Fatalf("kamailio exited:\n%s", lastLines(k.Log(), 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio does not answer OPTIONS on %s: %d %v\n%s", k.Addr, code, err, lastLines(k.Log(), 40))
		}
	}
	return k
}

// sipOptions sends one OPTIONS over UDP and returns the status of the answer.
func sipOptions(addr string) (int, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	local := c.LocalAddr().String()
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nFrom: <sip:probe@%s>;tag=%s\r\n"+
		"To: <sip:%s>\r\nCall-ID: %s@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", addr, local, id, local, id, addr, id)
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0, err
		}
		var code int
		if _, err := fmt.Sscanf(string(buf[:n]), "SIP/2.0 %d", &code); err == nil && code >= 200 {
			return code, nil
		}
	}
}

func (k *kamailio) Log() string { k.mu.Lock(); defer k.mu.Unlock(); return k.log.String() }

// WaitLog waits until cond holds for the whole log so far, checking it as each
// line arrives, or until d passes or Kamailio exits; it returns whether cond held.
func (k *kamailio) WaitLog(d time.Duration, cond func(log string) bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		next, log := k.logged, k.log.String()
		k.mu.Unlock()
		if cond(log) {
			return true
		}
		select {
		case <-next:
		case <-k.done:
			return cond(k.Log())
		case <-deadline.C:
			return cond(k.Log())
		}
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// gwEvent is one line of a gateway's JSON log.
type gwEvent struct {
	Time      time.Time `json:"time"`
	Msg       string    `json:"msg"`
	SIPCallID string    `json:"sip_call_id"`
	AgentID   int64     `json:"agent_id"`
	Reason    string    `json:"reason"`
	Active    int       `json:"active_calls"`
}

func gwEvents(log string, msg string) []gwEvent {
	var out []gwEvent
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `"msg":"`+msg+`"`) {
			continue
		}
		var e gwEvent
		if json.Unmarshal([]byte(l), &e) == nil && e.Msg == msg {
			out = append(out, e)
		}
	}
	return out
}

// metric reads one unlabelled sample from a node's /metrics.
func metric(t *testing.T, g *cxcotest.Gateway, name string) float64 {
	t.Helper()
	res, err := http.Get(g.HTTP + "/metrics")
	if err != nil {
		t.Fatalf("%s/metrics: %v", g.HTTP, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("%s not in /metrics", name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestKamailioScaleOut: Kamailio (the shipped config, dispatcher round robin) in
// front of two gateway nodes on one redis-server and one provider simulator.
// SIPp makes 16 calls through Kamailio, 4 a second, about 6 s each, to two agents
// (one published through each node). Mid-run node A gets SIGTERM: its live calls
// finish (SIPp counts no failed call), INVITEs that reach it during the drain fail
// over to node B and its OPTIONS probes take it out of rotation, every call from
// then on is B's, A exits after its last call, and the API counts 16 completed
// conversations.
func TestKamailioScaleOut(t *testing.T) {
	const calls = 16
	start := time.Now()
	bin := cxcotest.Binary(t)
	rd := redistest.StartRedis(t)

	// One provider for both nodes, as its own process.
	simPort := cxcotest.FreePort(t)
	sim := cxcotest.Start(t, bin, nil, "providersim", "--listen", fmt.Sprintf("127.0.0.1:%d", simPort))
	sim.WaitStdout(t, "provider simulator listening", 30*time.Second)
	simURL := fmt.Sprintf("http://127.0.0.1:%d", simPort)

	const agency = "cxco_agcy_k_KamailioScaleOutSharedKey012345"
	node := func(name string) *cxcotest.Gateway {
		return cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: rd.URL, ProviderURL: simURL,
			Args: []string{"--agency-key", agency, "--node-id", name, "--trunk-allow", "127.0.0.1/32", "--drain-timeout", "30s"}})
	}
	a, b := node("gw-a"), node("gw-b")
	k := startKamailio(t, []int{a.SIPPort, b.SIPPort})
	nodeURI := map[*cxcotest.Gateway]string{a: fmt.Sprintf("sip:127.0.0.1:%d", a.SIPPort), b: fmt.Sprintf("sip:127.0.0.1:%d", b.SIPPort)}
	t.Logf("redis, provider simulator, two nodes and kamailio up in %s", time.Since(start).Round(time.Millisecond))

	// A tenant made through A; one agent published through each node.
	tn := a.NewTenant("Scale Out")
	a.AddNumber("+27215550101", "ZA", false)
	b.AddNumber("+27215550102", "ZA", false)
	agentA, numberA := a.PublishAgent(tn, "Published on A", "ZA", nil)
	agentB, numberB := b.PublishAgent(tn, "Published on B", "ZA", nil)
	// Calls take the numbers in turn A, B, A, A, B, A, ...: with round robin over
	// the two nodes, each node gets calls of both agents.
	csv := filepath.Join(t.TempDir(), "numbers.csv")
	lines := []string{"SEQUENTIAL", strings.TrimPrefix(numberA, "+") + ";", strings.TrimPrefix(numberB, "+") + ";", strings.TrimPrefix(numberA, "+") + ";"}
	if err := os.WriteFile(csv, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	runStart := time.Now()
	wait := cxcotest.StartSIPp(t, k.Addr, "uac_agent_proxy.xml", numberA,
		"-inf", csv, "-m", strconv.Itoa(calls), "-r", "4", "-l", strconv.Itoa(calls), "-timeout", "50s")

	// SIGTERM to A once it carries three calls.
	if !a.Proc.WaitLog(20*time.Second, func(log string) bool { return len(gwEvents(log, "call answered")) >= 3 }) {
		t.Fatalf("node A never answered 3 calls; kamailio:\n%s", lastLines(k.Log(), 30))
	}
	a.Proc.Signal(syscall.SIGTERM)
	termAt := time.Now()
	exited := make(chan time.Time, 1)
	go func() { <-a.Proc.Done(); exited <- time.Now() }()
	a.Proc.WaitStderr(t, "draining: new calls are refused", 10*time.Second)
	if res, err := http.Get(a.HTTP + "/readyz"); err != nil || res.StatusCode != 503 {
		t.Errorf("draining node: /readyz %v %v, want 503", res, err)
	} else {
		res.Body.Close()
	}

	code, out := wait()
	runTime := time.Since(runStart)
	if code != 0 {
		t.Fatalf("SIPp exit %d: a call failed\n%s", code, lastLines(out, 80))
	}
	m := regexp.MustCompile(`Successful call\s*\|\s*\d+\s*\|\s*(\d+)`).FindAllStringSubmatch(out, -1)
	f := regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`).FindAllStringSubmatch(out, -1)
	if len(m) == 0 || len(f) == 0 || m[len(m)-1][1] != strconv.Itoa(calls) || f[len(f)-1][1] != "0" {
		t.Fatalf("SIPp: want %d successful calls and none failed:\n%s", calls, lastLines(out, 40))
	}

	// A drains and exits on its own once its last call is over.
	var exitAt time.Time
	select {
	case exitAt = <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("node A did not exit after its calls ended")
	}
	if c := a.Proc.Cmd.ProcessState.ExitCode(); c != 0 {
		t.Errorf("node A exit code %d", c)
	}
	aLog, bLog := a.Proc.Stderr(), b.Proc.Stderr()
	drained := gwEvents(aLog, "draining: new calls are refused; live calls may finish")
	if len(drained) != 1 || drained[0].Active == 0 {
		t.Fatalf("node A drain: %+v (want one drain with calls live)", drained)
	}
	drainAt := drained[0].Time
	aAnswered, aEnded := gwEvents(aLog, "call answered"), gwEvents(aLog, "call ended")
	bAnswered, bEnded := gwEvents(bLog, "call answered"), gwEvents(bLog, "call ended")
	var lastEnd time.Time
	for _, e := range aEnded {
		if e.Reason != "caller_hangup" {
			t.Errorf("node A call %s ended %q: the drain cut it", e.SIPCallID, e.Reason)
		}
		if e.Time.After(lastEnd) {
			lastEnd = e.Time
		}
	}
	if len(aEnded) != len(aAnswered) {
		t.Errorf("node A: %d calls answered, %d ended", len(aAnswered), len(aEnded))
	}
	for _, e := range gwEvents(aLog, "call received") {
		if e.Time.After(drainAt) {
			t.Errorf("node A took call %s at %s, after it began draining at %s", e.SIPCallID, e.Time, drainAt)
		}
	}
	if !lastEnd.After(drainAt) {
		t.Errorf("node A had no call live through the drain (last ended %s, drain %s)", lastEnd, drainAt)
	}
	var bAfter int
	for _, e := range bAnswered {
		if e.Time.After(drainAt) {
			bAfter++
		}
	}
	for _, e := range bEnded {
		if e.Reason != "caller_hangup" {
			t.Errorf("node B call %s ended %q", e.SIPCallID, e.Reason)
		}
	}
	if bAfter == 0 {
		t.Error("no call went to node B after A began draining")
	}
	if got := len(aAnswered) + len(bAnswered); got != calls {
		t.Errorf("answered %d (A) + %d (B) = %d, want %d", len(aAnswered), len(bAnswered), got, calls)
	}
	if got := metric(t, b, "cxco_calls_started_total"); int(got) != len(bAnswered) {
		t.Errorf("node B cxco_calls_started_total %v, its log answered %d", got, len(bAnswered))
	}
	// Each node served an agent published through the other one.
	perNode := func(ev []gwEvent) map[int64]int {
		m := map[int64]int{}
		for _, e := range ev {
			m[e.AgentID]++
		}
		return m
	}
	pa, pb := perNode(aAnswered), perNode(bAnswered)
	if pa[agentB] == 0 || pb[agentA] == 0 {
		t.Errorf("calls per agent: node A %v, node B %v: each node should serve the other's agent", pa, pb)
	}

	// Kamailio: INVITEs that reached A while it drained were failed over to B,
	// and A was taken out of rotation.
	klog := k.Log()
	failovers := 0
	for _, l := range strings.Split(klog, "\n") {
		if strings.Contains(l, "failed the INVITE") {
			failovers++
			if !strings.Contains(l, nodeURI[a]) {
				t.Errorf("failover away from a node other than A: %s", l)
			}
		}
	}
	// Out by a probe (OPTIONS answered 503), or by the failure route.
	downRE := regexp.MustCompile(`gateway node down: OPTIONS ` + regexp.QuoteMeta(nodeURI[a]))
	if !downRE.MatchString(klog) && failovers == 0 {
		t.Errorf("kamailio never took node A (%s) out:\n%s", nodeURI[a], lastLines(klog, 40))
	}
	if regexp.MustCompile(`gateway node down: OPTIONS ` + regexp.QuoteMeta(nodeURI[b])).MatchString(klog) {
		t.Errorf("kamailio took node B out:\n%s", lastLines(klog, 40))
	}

	// The API (through B, the node still up) counts every call SIPp made, completed.
	items := b.Must(200, "GET", "/api/conversations/?limit=100", tn.UserKey, nil)["items"].([]any)
	perAgent := map[int64]int{}
	for _, it := range items {
		c := it.(map[string]any)
		if c["status"] != "completed" {
			// SIPp is done once its BYE is answered; the node writes the
			// record's end just after (on a busy machine, a moment later).
			c = waitConversation(t, b, tn.UserKey, int64(c["id"].(float64)), func(c map[string]any) bool { return c["status"] != "in_progress" })
			if c["status"] != "completed" {
				t.Errorf("conversation %v: %v", c["id"], c["status"])
			}
		}
		perAgent[int64(c["agent_id"].(float64))]++
	}
	if len(items) != calls {
		t.Errorf("API: %d conversations, SIPp made %d calls", len(items), calls)
	}
	s := b.Must(200, "GET", "/api/usage/summary", tn.UserKey, nil)
	if v := s["voice"].(map[string]any)["total_conversations"].(float64); int(v) != calls {
		t.Errorf("usage: %v voice conversations, want %d", v, calls)
	}
	t.Logf("SIPp: %d calls through kamailio in %s, none failed; SIGTERM to A %s after SIPp started",
		calls, runTime.Round(time.Millisecond), termAt.Sub(runStart).Round(time.Millisecond))
	t.Logf("node A: %d calls (agents %v), %d live at SIGTERM, last ended %s after SIGTERM, exited %s after its last call (%s after SIGTERM)",
		len(aAnswered), pa, drained[0].Active, lastEnd.Sub(termAt).Round(time.Millisecond),
		exitAt.Sub(lastEnd).Round(time.Millisecond), exitAt.Sub(termAt).Round(time.Millisecond))
	t.Logf("node B: %d calls (agents %v), %d of them after A began draining; %d INVITE(s) failed over from A, probe took A out: %v; API: %d conversations %v, all completed; test took %s",
		len(bAnswered), pb, bAfter, failovers, downRE.MatchString(klog), len(items), perAgent, time.Since(start).Round(time.Millisecond))
}

// TestKamailioFailover: the failure_route. Kamailio's list, in priority order
// (DS_ALG=8), holds a draining node C (a call still up on it, so it answers
// INVITEs with 503), a port where nothing answers, and node B; probes are too
// rare to matter here. The first call is refused by C, times out on the silent
// port after FR_TIMER, and is answered by B; both failed destinations are taken
// out, so the second call goes straight to B. Kamailio runs two-legged here: the
// caller talks to 127.0.0.2 (SIP_IP), the nodes to 127.0.0.1 (INTERNAL_IP), so
// the in-dialog requests (ACK, re-INVITE, BYE) cross a double Record-Route.
func TestKamailioFailover(t *testing.T) {
	const echo = "+15550009"
	c := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", echo, "--node-id", "gw-c", "--drain-timeout", "30s"}})
	b := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", echo, "--node-id", "gw-b"}})
	silent := cxcotest.FreeUDPPort(t)

	// C drains with a call up.
	ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", c.SIPPort), echo, "PCMU")
	if code != 200 {
		t.Fatalf("call to C: %d", code)
	}
	c.Proc.Signal(syscall.SIGTERM)
	c.Proc.WaitStderr(t, "draining: new calls are refused", 10*time.Second)

	k := startKamailioList(t, fmt.Sprintf("1 sip:127.0.0.1:%d 0 30\n1 sip:127.0.0.1:%d 0 20\n1 sip:127.0.0.1:%d 0 10\n", c.SIPPort, silent, b.SIPPort),
		"DS_ALG=8", "DS_PING_INTERVAL=60", "SIP_IP=127.0.0.2", "INTERNAL_IP=127.0.0.1")
	csv := filepath.Join(t.TempDir(), "numbers.csv")
	if err := os.WriteFile(csv, []byte("SEQUENTIAL\n"+strings.TrimPrefix(echo, "+")+";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	// Two calls, 3 s apart: the second after the first has failed over.
	code, out := cxcotest.RunSIPp(t, k.Addr, "uac_agent_proxy.xml", echo, "-inf", csv, "-m", "2", "-r", "1", "-rp", "3000", "-timeout", "30s")
	if code != 0 {
		t.Fatalf("SIPp exit %d\n%s", code, lastLines(out, 60))
	}
	klog := k.Log()
	want := []string{
		fmt.Sprintf("node sip:127.0.0.1:%d failed the INVITE (503)", c.SIPPort),
		fmt.Sprintf("node sip:127.0.0.1:%d failed the INVITE (408)", silent),
		fmt.Sprintf("to sip:127.0.0.1:%d (failover)", b.SIPPort),
	}
	for _, w := range want {
		if n := strings.Count(klog, w); n != 1 {
			t.Errorf("kamailio log: %q %d times, want once:\n%s", w, n, lastLines(klog, 40))
		}
	}
	if n := strings.Count(klog, fmt.Sprintf("dispatch INVITE %s to sip:127.0.0.1:%d\n", strings.TrimPrefix(echo, "+"), b.SIPPort)); n != 1 {
		t.Errorf("second call: %d direct dispatches to B, want 1:\n%s", n, lastLines(klog, 40))
	}
	if got := metric(t, b, "cxco_calls_started_total"); got != 2 {
		t.Errorf("node B started %v calls, want 2", got)
	}
	t.Logf("two calls through kamailio in %s: the first failed over from the draining node (503) and the silent port (408 after FR_TIMER) to B, the second went to B directly",
		time.Since(began).Round(time.Millisecond))

	ph.Hangup()
	if code := c.Proc.Wait(15 * time.Second); code != 0 {
		t.Errorf("node C exit %d after its last call", code)
	}
}

// TestKamailioFrozenNodeKeepsItsCalls: a node that stops answering for a few
// seconds (SIGSTOP here; a long pause or a starved CPU in life) keeps the
// calls it carries. Its call's re-INVITE, sent through Kamailio while the node
// is stopped, is answered 200 once the node runs again, and the call ends with
// the caller's BYE. An in-dialog request cannot fail over, so Kamailio waits
// FR_TIMER_INDIALOG (RFC 3261's timer F) for it; with FR_TIMER's 2 s, meant to
// fail an INVITE over to another node, Kamailio answered the re-INVITE 408 and
// SIPp failed the call (TestKamailioScaleOut at load 14: both nodes stalled
// ~3 s, six re-INVITEs got 408). ~12 s.
func TestKamailioFrozenNodeKeepsItsCalls(t *testing.T) {
	const echo = "+15550009"
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", echo, "--node-id", "gw-f"}})
	k := startKamailioList(t, fmt.Sprintf("1 sip:127.0.0.1:%d 0 0 duid=gw0\n", g.SIPPort), "DS_PING_INTERVAL=60")
	csv := filepath.Join(t.TempDir(), "numbers.csv")
	if err := os.WriteFile(csv, []byte("SEQUENTIAL\n"+strings.TrimPrefix(echo, "+")+";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait := cxcotest.StartSIPp(t, k.Addr, "uac_agent_proxy.xml", echo, "-inf", csv, "-timeout", "40s")
	g.Proc.WaitStderr(t, `"msg":"call answered"`, 20*time.Second)
	// The scenario sends its re-INVITE 3 s after the answer; the node is
	// stopped from now until 7 s after the answer, longer than FR_TIMER after
	// the re-INVITE.
	g.Proc.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	time.Sleep(7 * time.Second) // the fault: the node's freeze, not a wait for a state
	g.Proc.Signal(syscall.SIGCONT)
	resumed := time.Now()
	code, out := wait()
	if code != 0 {
		t.Fatalf("SIPp exit %d: the call failed\n%s", code, lastLines(out, 60))
	}
	// The node logs the call's end just after its 200 to the BYE.
	g.Proc.WaitStderr(t, `"msg":"call ended"`, 10*time.Second)
	log := g.Proc.Stderr()
	offers := gwEvents(log, "offer answered")
	if len(offers) != 1 {
		t.Fatalf("the node answered %d re-INVITEs, want 1: %+v", len(offers), offers)
	}
	// The freeze covered the re-INVITE (else this test proved nothing).
	if !offers[0].Time.After(resumed.Add(-100 * time.Millisecond)) {
		t.Fatalf("the node answered the re-INVITE at %s, before it was stopped (%s) and ran again (%s)",
			offers[0].Time.Format(time.StampMilli), stopped.Format(time.StampMilli), resumed.Format(time.StampMilli))
	}
	if ended := gwEvents(log, "call ended"); len(ended) != 1 || ended[0].Reason != "caller_hangup" {
		t.Fatalf("call ended: %+v", ended)
	}
}
