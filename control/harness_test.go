package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/bridge/elevenlabs"
	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

// env is one control plane on a real redis-server with the provider simulator.
type env struct {
	t        testing.TB
	redis    *redistest.Redis
	st       *store.Store
	sim      *elevenlabssim.Server
	simURL   string
	api      *control.Server
	srv      *httptest.Server
	base     string
	agency   string
	cancel   context.CancelFunc
	sealer   *store.Sealer
	secret   string
	provider *elevenlabs.Provisioner
}

type envOpts struct {
	providerURL string // overrides the simulator (e.g. a dead address)
	redis       *redistest.Redis
	verifyDelay time.Duration
	now         func() time.Time // the store's clock (nil: time.Now)
	trunks      control.TrunkRuntime
	sim         elevenlabssim.Options
	api         func(*control.Options) // changes the control plane's options
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	e := &env{t: t, redis: o.redis}
	if e.redis == nil {
		e.redis = redistest.StartRedis(t)
	}
	e.secret = store.GenerateSecretKey()
	var err error
	e.sealer, err = store.NewSealer(e.secret)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CXCO_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	t.Cleanup(cancel)
	e.st, err = store.Open(ctx, store.Options{URL: e.redis.URL, Sealer: e.sealer, Logger: log, Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.agency = store.NewAPIKey(store.PrefixAgencyKey)
	if _, err := e.st.EnsureAgency(ctx, e.agency); err != nil {
		t.Fatal(err)
	}
	e.sim = elevenlabssim.New(o.sim)
	simSrv := httptest.NewServer(e.sim)
	t.Cleanup(simSrv.Close)
	e.simURL = simSrv.URL
	purl := simSrv.URL
	if o.providerURL != "" {
		purl = o.providerURL
	}
	e.provider = &elevenlabs.Provisioner{Client: elevenlabs.NewClient(purl), Store: e.st, PlatformKey: "test-platform-key", Log: log}
	apiOpts := control.Options{Store: e.st, Provisioner: bridge.Provisioning{ElevenLabs: e.provider}, Logger: log,
		WhatsAppVerifyDelay: o.verifyDelay, WebhookAllowInsecure: false, Trunks: o.trunks}
	if o.api != nil {
		o.api(&apiOpts)
	}
	e.api = control.New(apiOpts)
	e.srv = httptest.NewServer(e.api.Handler())
	t.Cleanup(e.srv.Close)
	e.base = e.srv.URL
	done := make(chan struct{})
	go func() { defer close(done); e.api.RunWhatsApp(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// resp is a decoded response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

func (r resp) list(t testing.TB) []any {
	t.Helper()
	var l []any
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatalf("response is not a JSON array: %v: %s", err, r.Body)
	}
	return l
}

func (e *env) do(method, path, key string, body any) resp {
	e.t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	if key != "" {
		h.Set("X-API-Key", key)
	}
	return e.doHeaders(method, path, h, body)
}

// must does a request and fails the test unless the status is want.
func (e *env) must(want int, method, path, key string, body any) resp {
	e.t.Helper()
	r := e.do(method, path, key, body)
	if r.Status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// fails checks an error status and the {detail, error_type} body, and that detail mentions contains.
func (e *env) fails(status int, errType, contains, method, path, key string, body any) {
	e.t.Helper()
	r := e.do(method, path, key, body)
	if r.Status != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, status, r.Body)
	}
	m := r.json(e.t)
	if m["error_type"] != errType {
		e.t.Fatalf("%s %s: error_type %v, want %s: %s", method, path, m["error_type"], errType, r.Body)
	}
	d, _ := m["detail"].(string)
	if d == "" || !strings.Contains(strings.ToLower(d), strings.ToLower(contains)) {
		e.t.Fatalf("%s %s: detail %q does not mention %q", method, path, d, contains)
	}
	if len(m) != 2 {
		e.t.Fatalf("%s %s: error body has extra fields: %s", method, path, r.Body)
	}
}

// tenant is a company with a user, as a customer would set one up.
type tenant struct {
	id      int64
	compKey string
	userKey string
	userID  int64
}

func (e *env) newTenant(name string, plan ...string) tenant {
	e.t.Helper()
	body := map[string]any{"name": name}
	if len(plan) > 0 {
		body["plan"] = plan[0]
	}
	c := e.must(201, "POST", "/api/agency/companies", e.agency, body).json(e.t)
	tn := tenant{id: int64(c["id"].(float64)), compKey: c["api_key"].(string)}
	u := e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": strings.ToLower(strings.ReplaceAll(name, " ", "")) + "@example.com", "name": name + " Admin", "role": "admin"}).json(e.t)
	tn.userKey, tn.userID = u["api_key"].(string), int64(u["id"].(float64))
	return tn
}

var numberSeq = 0

// addNumbers puts n numbers of a country in the pool and returns them.
func (e *env) addNumbers(cc string, n int) []string {
	e.t.Helper()
	prefix := map[string]string{"ZA": "+2721", "US": "+1415", "GB": "+4420"}[cc]
	var out []string
	for i := 0; i < n; i++ {
		numberSeq++
		num := fmt.Sprintf("%s%07d", prefix, 1000000+numberSeq)
		e.must(201, "POST", "/api/agency/phone-numbers", e.agency, map[string]any{"number": num, "country_code": cc})
		out = append(out, num)
	}
	return out
}

func (e *env) newAgent(tn tenant, name string) int64 {
	e.t.Helper()
	a := e.must(201, "POST", "/api/agents/", tn.userKey, map[string]any{
		"name": name, "personality": "You are " + name + ".", "opening_line": "Hello from " + name + ".", "voice_id": 1,
	}).json(e.t)
	return int64(a["id"].(float64))
}

func num(v any) int64 { f, _ := v.(float64); return int64(f) }
