package cxcotest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// GatewayOptions start one `cxco serve`.
type GatewayOptions struct {
	RedisURL    string // empty: embedded store
	ProviderURL string // empty: the in-process simulator
	SIPHost     string // empty: 127.0.0.1; "::1" for IPv6, "" with SIPAll for every address
	SIPAll      bool   // listen on every address (IPv4 and IPv6): --sip :port; only in a loopback-only network namespace
	// NetNS runs the gateway in that network namespace (ip netns exec), on Host:
	// its HTTP, SIP and RTP bind there and its SDP names it.
	NetNS, Host string
	// Plain runs the binary built without -race (PlainBinary): for timing.
	Plain bool
	// Nice is added to the gateway's niceness (nice -n): a test that runs
	// itself at a raised priority starts the gateway back at the usual one.
	Nice int
	Args []string // more flags
	Env  []string
	// Prefix runs the binary under a command, e.g. {"prlimit", "--nofile=256:256"}.
	Prefix []string
}

// Gateway is a running `cxco serve` on loopback.
type Gateway struct {
	t         testing.TB
	Proc      *Process
	HTTP      string // http://127.0.0.1:port
	SIPPort   int
	AgencyKey string
}

var agencyKeyRE = regexp.MustCompile(`cxco_agcy_k_[A-Za-z0-9]+`)

// StartGateway builds and starts the binary on free loopback ports, with a fixed
// agency key, and waits until it serves.
func StartGateway(t testing.TB, o GatewayOptions) *Gateway {
	t.Helper()
	// Free ports are only free until someone takes them (other test processes run
	// at the same time): try again with new ones if a bind loses the race.
	for attempt := 0; ; attempt++ {
		g, err := startGateway(t, o)
		if err == nil {
			return g
		}
		if attempt == 4 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
}

func startGateway(t testing.TB, o GatewayOptions) (*Gateway, error) {
	t.Helper()
	httpPort := FreePort(t)
	sipPort := FreeUDPPort(t)
	rtpLow := 20000 + 2*rand.IntN(15000)
	key := "cxco_agcy_k_" + fmt.Sprintf("test%028d", rand.Int64N(1e18))
	for i, a := range o.Args {
		if a == "--agency-key" && i+1 < len(o.Args) {
			key = o.Args[i+1] // a second node of the same agency
		}
	}
	host := "127.0.0.1"
	if o.Host != "" {
		host = o.Host
	}
	sipAddr := net.JoinHostPort(host, fmt.Sprint(sipPort))
	switch {
	case o.SIPAll:
		sipAddr = fmt.Sprintf(":%d", sipPort)
	case o.SIPHost != "":
		sipAddr = net.JoinHostPort(o.SIPHost, fmt.Sprint(sipPort))
	}
	httpAddr := net.JoinHostPort(host, fmt.Sprint(httpPort))
	args := []string{"serve", "--http", httpAddr, "--sip", sipAddr,
		"--public-ip", host, "--rtp-ports", fmt.Sprintf("%d-%d", rtpLow, rtpLow+999), "--agency-key", key,
		"--log-format", "json", "--secret-key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}
	if o.RedisURL != "" {
		args = append(args, "--redis", o.RedisURL)
	}
	if o.ProviderURL != "" {
		args = append(args, "--provider-url", o.ProviderURL, "--provider-api-key", "test-platform-key")
	}
	args = append(args, o.Args...)
	bin := Binary(t)
	if o.Plain {
		bin = PlainBinary(t)
	}
	if len(o.Prefix) > 0 {
		args = append(append(append([]string{}, o.Prefix[1:]...), bin), args...)
		bin = o.Prefix[0]
	}
	if o.NetNS != "" {
		args = append([]string{"netns", "exec", o.NetNS, bin}, args...)
		bin = "ip"
	}
	if o.Nice != 0 {
		args = append([]string{"-n", fmt.Sprint(o.Nice), bin}, args...)
		bin = "nice"
	}
	p := Start(t, bin, o.Env, args...)
	if _, ok := p.waitStdout("API:", 30*time.Second); !ok {
		p.Kill()
		return nil, fmt.Errorf("gateway did not start: %s", tail(p.Stderr(), 5))
	}
	if !WaitTCP(httpAddr, 10*time.Second) {
		return nil, fmt.Errorf("gateway HTTP did not come up")
	}
	return &Gateway{t: t, Proc: p, HTTP: "http://" + httpAddr, SIPPort: sipPort, AgencyKey: key}, nil
}

// Do calls the API and decodes the JSON answer (nil on 204).
func (g *Gateway) Do(method, path, key string, body any) (int, any) {
	g.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, g.HTTP+path, rd)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var v any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			g.t.Fatalf("%s %s: %d, not JSON: %s", method, path, res.StatusCode, raw)
		}
	}
	return res.StatusCode, v
}

// Must calls the API and fails unless the status is want.
func (g *Gateway) Must(want int, method, path, key string, body any) map[string]any {
	g.t.Helper()
	code, v := g.Do(method, path, key, body)
	if code != want {
		g.t.Fatalf("%s %s: %d, want %d: %v", method, path, code, want, v)
	}
	m, _ := v.(map[string]any)
	return m
}

// Tenant is a company with a user key.
type Tenant struct {
	CompanyID           int64
	CompanyKey, UserKey string
}

// NewTenant creates a company and a user through the API.
func (g *Gateway) NewTenant(name string) Tenant {
	g.t.Helper()
	c := g.Must(201, "POST", "/api/agency/companies", g.AgencyKey, map[string]any{"name": name, "plan": "enterprise", "rate_limit_per_minute": 100000})
	tn := Tenant{CompanyID: int64(c["id"].(float64)), CompanyKey: c["api_key"].(string)}
	u := g.Must(201, "POST", "/api/users/", tn.CompanyKey, map[string]any{"email": fmt.Sprintf("ops%d@example.com", tn.CompanyID), "name": "Ops"})
	tn.UserKey = u["api_key"].(string)
	return tn
}

// AddNumber puts a number into the pool.
func (g *Gateway) AddNumber(number, country string, echo bool) {
	g.t.Helper()
	g.Must(201, "POST", "/api/agency/phone-numbers", g.AgencyKey, map[string]any{"number": number, "country_code": country, "echo_line": echo})
}

// PublishAgent creates and publishes an agent and returns its id and number.
func (g *Gateway) PublishAgent(tn Tenant, name, country string, config map[string]any) (int64, string) {
	g.t.Helper()
	body := map[string]any{"name": name, "personality": "You are " + name + ", a helpful test agent.",
		"opening_line": "Hello, this is " + name + ". How can I help?", "voice_id": 1}
	if config != nil {
		body["config"] = config
	}
	a := g.Must(201, "POST", "/api/agents/", tn.UserKey, body)
	id := int64(a["id"].(float64))
	p := g.Must(200, "POST", fmt.Sprintf("/api/agents/%d/publish", id), tn.UserKey, map[string]any{"country_code": country})
	return id, p["phone_number"].(map[string]any)["number"].(string)
}

// SIPp runs one SIPp scenario from deploy/sipp against the gateway and returns its
// exit code (0: every call succeeded) and output.
func (g *Gateway) SIPp(scenario, number string, extra ...string) (int, string) {
	g.t.Helper()
	return RunSIPp(g.t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), scenario, number, extra...)
}

// RunSIPp runs a scenario of deploy/sipp against target.
func RunSIPp(t testing.TB, target, scenario, number string, extra ...string) (int, string) {
	t.Helper()
	return StartSIPp(t, target, scenario, number, extra...)()
}

// ServeSIPp starts a server scenario of deploy/sipp (SIPp as the called side) on a
// free loopback port; it returns the port and a function that waits for SIPp to end.
func ServeSIPp(t testing.TB, scenario string, extra ...string) (int, func() (int, string)) {
	t.Helper()
	port := FreeUDPPort(t)
	return port, StartSIPp(t, "", scenario, "", append([]string{"-p", fmt.Sprint(port)}, extra...)...)
}

// ServeSIPpFiles is ServeSIPp with files written into SIPp's working
// directory first (the pcap audio a scenario plays by a relative name).
func ServeSIPpFiles(t testing.TB, scenario string, files map[string][]byte, extra ...string) (int, func() (int, string)) {
	t.Helper()
	port := FreeUDPPort(t)
	return port, startSIPpRun(t, "", scenario, "", files, append([]string{"-p", fmt.Sprint(port)}, extra...)...).Wait
}

// ServeSIPpRun is ServeSIPp returning the run, whose message log can be read
// (Messages) once it is stopped (Stop).
func ServeSIPpRun(t testing.TB, scenario string, extra ...string) (int, *SIPpRun) {
	t.Helper()
	port := FreeUDPPort(t)
	return port, startSIPpRun(t, "", scenario, "", nil, append([]string{"-p", fmt.Sprint(port)}, extra...)...)
}

// StartSIPp starts a scenario (against target, unless it is "") and returns a
// function that waits for SIPp and gives its exit code and output.
func StartSIPp(t testing.TB, target, scenario, number string, extra ...string) func() (int, string) {
	t.Helper()
	return StartSIPpRun(t, target, scenario, number, extra...).Wait
}

// SIPpRun is a running SIPp scenario.
type SIPpRun struct {
	dir  string
	cmd  *exec.Cmd
	wait func() (int, string)
}

// Stop asks SIPp to end (SIGUSR1: no new calls, the calls under way finish,
// its logs are flushed) and waits for it.
func (r *SIPpRun) Stop() (int, string) {
	_ = r.cmd.Process.Signal(syscall.SIGUSR1)
	return r.wait()
}

// Wait waits for SIPp to end and gives its exit code (0: every call succeeded)
// and output.
func (r *SIPpRun) Wait() (int, string) { return r.wait() }

// StartSIPpRun starts a scenario (against target, unless it is "") whose message
// log can be read afterwards (Calls).
func StartSIPpRun(t testing.TB, target, scenario, number string, extra ...string) *SIPpRun {
	t.Helper()
	return startSIPpRun(t, target, scenario, number, nil, extra...)
}

func startSIPpRun(t testing.TB, target, scenario, number string, files map[string][]byte, extra ...string) *SIPpRun {
	t.Helper()
	bin, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatalf("sipp not found: install it with `apt-get install -y sip-tester` (deploy/test.sh does this)")
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-sf", filepath.Join(RepoRoot(), "deploy", "sipp", scenario)}
	if target != "" {
		args = append(args, "-s", strings.TrimPrefix(number, "+"), target, "-p", fmt.Sprint(FreeUDPPort(t)))
	}
	local := "127.0.0.1"
	if strings.HasPrefix(target, "[") {
		local = "::1" // an IPv6 target: SIPp speaks IPv6 too
	}
	args = append(args, "-i", local, "-mi", local, "-mp", fmt.Sprint(FreeMediaPort(t, local)),
		"-m", "1", "-timeout", "60s", "-timeout_error", "-nostdin", "-trace_err", "-trace_msg")
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return &SIPpRun{dir: dir, cmd: cmd, wait: func() (int, string) {
		<-done
		return sippResult(dir, waitErr, out.String())
	}}
}

// SIPpCall is one call as SIPp's own message log times it: when the 200 to its
// INVITE arrived and when SIPp sent its BYE (zero if it never did).
type SIPpCall struct {
	CallID        string
	Answered, Bye time.Time
}

// Length is the call's length by SIPp's clock (answer to BYE).
func (c SIPpCall) Length() time.Duration {
	if c.Answered.IsZero() || c.Bye.IsZero() {
		return 0
	}
	return c.Bye.Sub(c.Answered)
}

// SIPpMessage is one message in SIPp's message log (-trace_msg).
type SIPpMessage struct {
	At   time.Time
	Sent bool   // SIPp sent it (else received)
	Line string // the start line: "INVITE sip:... SIP/2.0", "SIP/2.0 200 OK"
	// CallID, CSeq, To and Contact are the headers' values.
	CallID, CSeq, To, Contact string
	Text                      string // the whole message
}

// Messages reads SIPp's message log (-trace_msg), in the order SIPp logged
// the messages. Read it once SIPp has ended (its log is buffered).
func (r *SIPpRun) Messages() []SIPpMessage {
	var out []SIPpMessage
	files, _ := filepath.Glob(filepath.Join(r.dir, "*_messages.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// Entries: "----...---- 2026-12-03 15:43:20.570664", "UDP message sent (N bytes):",
		// a blank line, then the message.
		for _, e := range strings.Split(string(b), "-----------------------------------------------")[1:] {
			lines := strings.Split(strings.TrimLeft(e, "- "), "\n")
			if len(lines) < 4 {
				continue
			}
			at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", strings.TrimSpace(lines[0]), time.Local)
			if err != nil {
				continue
			}
			m := SIPpMessage{At: at, Sent: strings.Contains(lines[1], "message sent"), Line: strings.TrimSpace(lines[3]),
				Text: strings.Join(lines[3:], "\n")}
			for _, l := range lines[4:] {
				l = strings.TrimRight(l, "\r")
				name, v, ok := strings.Cut(l, ":")
				if !ok {
					continue
				}
				v = strings.TrimSpace(v)
				switch strings.ToLower(strings.TrimSpace(name)) {
				case "call-id", "i":
					m.CallID = v
				case "cseq":
					m.CSeq = v
				case "to", "t":
					m.To = v
				case "contact", "m":
					m.Contact = v
				}
			}
			if m.CallID != "" {
				out = append(out, m)
			}
		}
	}
	return out
}

// Calls reads SIPp's message log (-trace_msg): every call it made, by Call-ID.
func (r *SIPpRun) Calls() map[string]*SIPpCall {
	out := map[string]*SIPpCall{}
	for _, m := range r.Messages() {
		c := out[m.CallID]
		if c == nil {
			c = &SIPpCall{CallID: m.CallID}
			out[m.CallID] = c
		}
		switch {
		case !m.Sent && strings.HasPrefix(m.Line, "SIP/2.0 200") && strings.HasSuffix(m.CSeq, "INVITE") && c.Answered.IsZero():
			c.Answered = m.At
		case m.Sent && strings.HasPrefix(m.Line, "BYE ") && c.Bye.IsZero():
			c.Bye = m.At
		}
	}
	return out
}

func sippResult(dir string, err error, text string) (int, string) {
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			code = -1
		}
	}
	if code != 0 {
		for _, pat := range []string{"*messages.log", "*errors.log"} { // errors last: callers often show the tail
			files, _ := filepath.Glob(filepath.Join(dir, pat))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				text += "\n--- " + filepath.Base(f) + "\n" + tail(string(b), 120)
			}
		}
	}
	return code, text
}

// StartSim starts `cxco providersim` on a free loopback port with args (test
// hooks, switches) and returns its base URL. Each call is a provider of its own.
func StartSim(t testing.TB, args ...string) string {
	t.Helper()
	port := FreePort(t)
	p := Start(t, Binary(t), nil, append([]string{"providersim", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-format", "json"}, args...)...)
	p.WaitStdout(t, "provider simulator listening", 30*time.Second)
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// SimConversations reads the simulator's record of its conversations (GET /sim/conversations).
func SimConversations(t testing.TB, simURL string) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, simURL+"/sim/conversations", nil)
	req.Header.Set("xi-api-key", "test-platform-key")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out []map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("GET /sim/conversations: %d: %v", res.StatusCode, err)
	}
	return out
}

// SimGet reads a document of the simulator's REST API (an agent, a tool) with key.
func SimGet(t testing.TB, simURL, key, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, simURL+path, nil)
	req.Header.Set("xi-api-key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}
