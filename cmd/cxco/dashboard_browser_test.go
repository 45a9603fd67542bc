package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
)

// chromiumPath finds Debian's chromium (deploy/test.sh installs it); the test
// fails, never skips, without it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CXCO_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: install it with `apt-get install -y chromium` (deploy/test.sh does this), or set CXCO_CHROMIUM")
	return ""
}

// artifacts is where the screenshots go: $CXCO_ARTIFACTS, else a new temporary folder that is kept.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CXCO_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "cxco-dashboard-"); err != nil {
			t.Fatal(err)
		}
	}
	dir = filepath.Join(dir, "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// callerWAV is what the fake microphone plays (Chromium loops it): 2 s of
// silence (the opening line plays meanwhile, so the caller does not barge in
// on it), 1.5 s of a 1 kHz tone, 2 s of silence: the simulator hears one
// utterance per loop.
func callerWAV(t *testing.T) string {
	const rate = 48000
	pcm := make([]int16, rate*11/2)
	(&audiotest.Tone{Rate: rate, Freq: 1000, Amplitude: 0.5}).Fill(pcm[2*rate : rate*7/2])
	p := filepath.Join(t.TempDir(), "caller.wav")
	if err := audiotest.WriteWAV(p, rate, pcm); err != nil {
		t.Fatal(err)
	}
	return p
}

// tab is one Chromium tab on the dashboard.
type tab struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	base string
	n    int

	mu   sync.Mutex
	errs []string // uncaught page exceptions
}

func (b *tab) fail(format string, args ...any) {
	b.t.Helper()
	b.shot("failure")
	b.t.Fatalf(format, args...)
}

// run runs actions with a deadline, failing the test with what on error.
func (b *tab) run(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// wait polls a JavaScript predicate.
func (b *tab) wait(what, predicate string, d time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		b.fail("waiting for %s: %v", what, err)
	}
}

func eval[T any](b *tab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluating %s: %v", expr, err)
	}
	return v
}

// shot saves a screenshot of the page as NN-name.png.
func (b *tab) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	p := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
	if v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.isArray(window.__csp) ? window.__csp : ['(the CSP watcher did not run)']`)); err == nil && len(v) > 0 {
		b.t.Errorf("%s: the page's Content-Security-Policy blocked %v", name, v)
	}
}

func (b *tab) goTo(hash string) {
	b.t.Helper()
	b.run("navigate to "+hash, 10*time.Second, chromedp.Evaluate[chromedp.Void](fmt.Sprintf("location.hash = %q", hash)))
}

func (b *tab) signIn(key, landing string) {
	b.t.Helper()
	b.run("sign in", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#api-key")),
		chromedp.SendKeys(chromedp.CSS("#api-key"), key),
		chromedp.Click(chromedp.CSS(`[data-testid="sign-in"]`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`[data-nav=%q].active`, landing))))
}

func (b *tab) signOut() {
	b.t.Helper()
	b.run("sign out", 10*time.Second, chromedp.Click(chromedp.CSS(`[data-testid="sign-out"]`)), chromedp.WaitVisible(chromedp.CSS("#api-key")))
}

// newTab starts headless Chromium with a fake microphone playing wav and opens the dashboard.
func newTab(t *testing.T, base, wav string) *tab {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", wav),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// The test runs in a namespace whose only interface is lo: let WebRTC use it,
		// with plain host candidates (no mDNS names to announce or resolve).
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	b := &tab{t: t, ctx: ctx, dir: artifacts(t), base: base}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			b.mu.Lock()
			b.errs = append(b.errs, msg)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Every page records what its Content-Security-Policy blocked; shot checks it.
	watchCSP := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
			window.__csp = [];
			document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`})
		return chromedp.Void{}, err
	}
	b.run("watch the CSP", 10*time.Second, watchCSP)
	b.run("open the dashboard", 20*time.Second, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.errs) > 0 {
			t.Errorf("uncaught exceptions in the page:\n%s", strings.Join(b.errs, "\n"))
		}
	})
	return b
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against the
// built binary: a company key registers a webhook (user pages hidden); a user key
// creates and publishes an agent and sees it active with its number, talks to it
// over WebRTC with the fake microphone playing a WAV (the opening line is heard in
// the page), hangs up, and finds the conversation with its transcript; the usage
// chart counts the call; the company key then sees the webhook's delivery of it.
// Every page is saved as a screenshot.
//
// It runs in a network namespace of its own: Chromium gathers WebRTC candidates on
// every interface and would announce them over multicast DNS; there, lo is all it has.
func TestDashboardInBrowser(t *testing.T) {
	if inOwnNetNS(t) {
		return
	}
	start := time.Now()
	hooks := make(chan string, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case hooks <- r.Header.Get("X-CXCO-Event") + " " + string(b):
		default:
		}
	}))
	defer receiver.Close()
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--webhook-allow-insecure"}})
	tn := g.NewTenant("Browser Co")
	const number = "+27215550123"
	g.AddNumber(number, "ZA", false)
	g.AddNumber("+14155550100", "US", false)
	b := newTab(t, g.HTTP, callerWAV(t))
	b.shot("signin")

	// Company key: usage and webhooks, not the user pages.
	b.signIn(tn.CompanyKey, "usage")
	if n := eval[int](b, `document.querySelectorAll('[data-nav=agents],[data-nav=conversations],[data-nav=numbers]').length`); n != 0 {
		b.fail("a company key sees %d user pages in the menu", n)
	}
	b.goTo("#/agents")
	b.wait("the agents page to say it needs a user key", `!!document.querySelector('[data-testid=needs-key]')`, 10*time.Second)
	b.goTo("#/webhooks")
	b.run("register a webhook", 15*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#wh-url")),
		chromedp.SendKeys(chromedp.CSS("#wh-url"), receiver.URL+"/hooks"),
		chromedp.SendKeys(chromedp.CSS("#wh-secret"), "s3cret-for-the-test"),
		chromedp.Click(chromedp.CSS(`form.grid button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=webhooks] tr[data-webhook]`)))
	b.shot("webhooks")
	b.signOut()

	// User key: create, publish, see it active with its number.
	b.signIn(tn.UserKey, "agents")
	if n := eval[int](b, `document.querySelectorAll('[data-nav=webhooks]').length`); n != 0 {
		b.fail("a user key sees the webhooks page in the menu")
	}
	b.run("create an agent", 15*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=new-agent]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=agent-form] #name`)),
		chromedp.SendKeys(chromedp.CSS("#name"), "Browser Agent"),
		chromedp.SendKeys(chromedp.CSS("#personality"), "You are a friendly test agent."),
		chromedp.SendKeys(chromedp.CSS("#opening_line"), "Hello, browser."),
		chromedp.Click(chromedp.CSS(`[data-testid=save-agent]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-action=publish]`))) // the new agent's page
	b.goTo("#/agents")
	b.run("publish it in ZA from the list", 20*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`tr[data-status=draft] [data-action=publish]`)),
		chromedp.Click(chromedp.CSS(`tr[data-status=draft] [data-action=publish]`)),
		chromedp.WaitVisible(chromedp.CSS(`select[name=country_code]`)),
		chromedp.SetValue(chromedp.CSS(`select[name=country_code]`), "ZA"),
		chromedp.Click(chromedp.CSS(`[data-action=confirm-publish]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-status=active] [data-testid=agent-number]`)))
	if got := eval[string](b, `document.querySelector('tr[data-status=active] [data-testid=agent-number]').textContent`); got != number {
		b.fail("the active agent shows number %q, want %s", got, number)
	}
	b.shot("agents")
	b.run("edit its personality", 15*time.Second,
		chromedp.Click(chromedp.CSS(`tr[data-status=active] [data-action=edit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=agent-form] #personality`)),
		chromedp.SetValue(chromedp.CSS("#personality"), "You are a friendly test agent. Keep answers short."))
	b.shot("agent-edit")
	b.run("save it", 15*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=save-agent]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=banner]`)))
	b.goTo("#/agents")
	b.run("back to the list", 15*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-status=active] [data-action=talk]`)))
	if p := g.Must(200, "GET", "/api/agents/1", tn.UserKey, nil)["personality"]; p != "You are a friendly test agent. Keep answers short." {
		b.fail("personality after the edit: %q", p)
	}

	// Talk to it: the page receives the opening line (packets and a level).
	b.run("start the test call", 10*time.Second, chromedp.Click(chromedp.CSS(`tr[data-status=active] [data-action=talk]`)))
	b.wait("the call to connect", `document.querySelector('[data-testid=call-state]')?.textContent === 'Connected'`, 20*time.Second)
	b.wait("the opening line in the page", `(() => { const r = document.querySelector('[data-testid=call-rx]');
		return r && Number(r.dataset.packets) > 50 && Number(r.dataset.level) > 0.02; })()`, 15*time.Second)
	id := eval[string](b, `document.getElementById('call').dataset.testCall`)
	// Keep talking until the agent has heard the caller (the WAV's tone) at least once.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, v := g.Do("GET", "/api/conversations/"+id, tn.UserKey, nil)
		c, _ := v.(map[string]any)
		heard := false
		for _, e := range asList(c["transcript"]) {
			heard = heard || e["role"] == "user"
		}
		if heard {
			break
		}
		if time.Now().After(deadline) {
			b.fail("the agent never heard the caller: %v", c)
		}
		time.Sleep(200 * time.Millisecond) // polling the API while the call runs
	}
	b.shot("call")
	b.run("hang up", 20*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=hangup]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=call-state][data-ended="1"]`)))
	audioLevel := eval[string](b, `document.querySelector('[data-testid=call-rx]').dataset.audioLevel`)
	t.Logf("call %s: page received %s packets, analyser peak %s, getStats audioLevel %s", id,
		eval[string](b, `document.querySelector('[data-testid=call-rx]').dataset.packets`),
		eval[string](b, `document.querySelector('[data-testid=call-rx]').dataset.level`), audioLevel)

	// The conversation, from the call panel's link.
	b.run("open the conversation", 15*time.Second,
		chromedp.Click(chromedp.CSS(`[data-testid=call-conversation]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=transcript] .bubble`)))
	first := eval[string](b, `(() => { const e = document.querySelector('[data-testid=transcript] .bubble'); return e.dataset.role + ': ' + e.lastChild.textContent; })()`)
	if first != "agent: Hello, browser." {
		b.fail("the transcript starts with %q, want the opening line", first)
	}
	if n := eval[int](b, `document.querySelectorAll('[data-testid=transcript] .bubble[data-role=user]').length`); n < 1 {
		b.fail("no caller entry in the transcript")
	}
	if got := eval[string](b, `document.querySelector('[data-stat=packets_received]')?.textContent || ''`); got == "" || got == "0" {
		b.fail("RTP stats: packets received %q", got)
	}
	// The call's audio quality at a glance: the E-model's MOS, coloured.
	if got := eval[string](b, `document.querySelector('[data-testid=audio-quality]')?.textContent || ''`); !strings.Contains(got, "MOS ") || !strings.Contains(got, " R ") {
		b.fail("audio quality on the conversation page: %q", got)
	}
	b.shot("conversation")
	b.goTo("#/conversations")
	b.wait("the conversation in the list", fmt.Sprintf(`!!document.querySelector('tr[data-conversation=%q]')`, id), 10*time.Second)
	if got := eval[string](b, fmt.Sprintf(`document.querySelector('tr[data-conversation=%q]').textContent`, id)); !strings.Contains(got, "webrtc") || !strings.Contains(got, "completed") {
		b.fail("conversation row: %q", got)
	}
	if got := eval[string](b, fmt.Sprintf(`document.querySelector('tr[data-conversation=%q] [data-quality]')?.dataset.quality || ''`, id)); got != "good" && got != "fair" && got != "poor" {
		b.fail("conversation row without its audio quality badge: %q", got)
	}
	b.shot("conversations")

	// Usage: today's bar counts the call.
	today := time.Now().UTC().Format("2006-01-02")
	b.goTo("#/usage")
	b.wait("the usage charts", fmt.Sprintf(`!!document.querySelector('[data-testid=chart-conversations] rect[data-date=%q]')`, today), 10*time.Second)
	if v := eval[string](b, fmt.Sprintf(`document.querySelector('[data-testid=chart-conversations] rect[data-date=%q]').dataset.value`, today)); v != "1" {
		b.fail("today's conversations bar is %s, want 1", v)
	}
	if v := eval[string](b, fmt.Sprintf(`document.querySelector('[data-testid=chart-minutes] rect[data-date=%q]').dataset.value`, today)); v == "0" {
		b.fail("today's voice minutes bar is 0")
	}
	if n := eval[int](b, `document.querySelectorAll('[data-testid=by-agent] tr[data-agent]').length`); n != 1 {
		b.fail("by-agent table has %d rows", n)
	}
	b.shot("usage")
	b.goTo("#/numbers")
	b.wait("the phone numbers", fmt.Sprintf(`!!document.querySelector('tr[data-number=%q]')`, number), 10*time.Second)
	b.shot("numbers")
	b.signOut()

	// The API agrees with the page.
	c := g.Must(200, "GET", "/api/conversations/"+id, tn.UserKey, nil)
	if c["channel"] != "voice" || c["caller_number"] != "webrtc" || c["status"] != "completed" || c["end_reason"] != "caller_hangup" {
		t.Fatalf("conversation: %v", c)
	}

	// The company key sees the webhook's delivery of the call.
	b.signIn(tn.CompanyKey, "usage")
	b.goTo("#/webhooks")
	b.run("open the deliveries", 10*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`[data-action=deliveries]`)),
		chromedp.Click(chromedp.CSS(`[data-action=deliveries]`)))
	b.wait("a delivery or the notice that the API is missing",
		`!!document.querySelector('[data-testid=deliveries] tr[data-delivery], [data-testid=no-deliveries-api], [data-testid=deliveries] + *, .panel.empty')`, 10*time.Second)
	b.shot("deliveries")
	select {
	case h := <-hooks:
		t.Logf("webhook received: %.120s", h)
	case <-time.After(10 * time.Second):
		t.Errorf("the webhook received nothing")
	}
	t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond))
}

func asList(v any) []map[string]any {
	var out []map[string]any
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &out)
	return out
}
