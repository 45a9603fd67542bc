package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// registrar is Kamailio playing a carrier's registrar and edge proxy
// (testdata/kamailio-registrar.cfg): digest REGISTER over UDP and TLS, the TLS
// side demanding a client certificate of the test's CA.
type registrar struct {
	*kamailio
	UDP, TLS string // 127.0.0.1:port
}

// readyz is the status of GET /readyz.
func readyz(t *testing.T, g *cxcotest.Gateway) int {
	t.Helper()
	res, err := http.Get(g.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func startRegistrar(t *testing.T, ca *cxcotest.CA, user, password string, maxExpires int) *registrar {
	t.Helper()
	bin := kamailioBinary(t)
	dir := t.TempDir()
	cert, key, _ := ca.Issue("registrar")
	tlsCfg := filepath.Join(dir, "tls.cfg")
	// The server side verifies and requires a client certificate (mutual TLS, as
	// carriers that demand one do); as a client (to the gateway's contact) it
	// does not check the gateway's.
	conf := fmt.Sprintf("[server:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\n"+
		"private_key = %s\ncertificate = %s\nca_list = %s\n\n[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
		key, cert, ca.File)
	if err := os.WriteFile(tlsCfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	udp, tlsPort := cxcotest.FreeUDPPort(t), cxcotest.FreePort(t)
	args := []string{"-f", filepath.Join(cxcotest.RepoRoot(), "cmd", "cxco", "testdata", "kamailio-registrar.cfg"), "-DD", "-E",
		"-Y", run, "-P", filepath.Join(run, "kamailio.pid"),
		"-A", "SIP_PORT=" + strconv.Itoa(udp), "-A", "TLS_PORT=" + strconv.Itoa(tlsPort), "-A", "TLS_CFG=" + strconv.Quote(tlsCfg),
		"-A", "AUTH_USER=" + strconv.Quote(user), "-A", "AUTH_PASS=" + strconv.Quote(password), "-A", "MAX_EXPIRES=" + strconv.Itoa(maxExpires)}
	udpAddr := fmt.Sprintf("127.0.0.1:%d", udp)
	return &registrar{kamailio: runKamailio(t, bin, args, udpAddr), UDP: udpAddr, TLS: fmt.Sprintf("127.0.0.1:%d", tlsPort)}
}

// TestCarrierRegistration: a trunk added through the API registers to the
// carrier's registrar (Kamailio) over TLS, with digest authentication and the
// trunk's client certificate (the registrar demands one), after its first
// registrar (nothing listens there) fails; it refreshes before the short binding
// Kamailio grants runs out; the state shows in the API and /metrics. Then a SIPp
// caller on the carrier's side calls the registered user: Kamailio looks up our
// binding and sends the INVITE to the gateway's TLS contact, with the dialled
// number in To, and the call reaches the agent. When the registrar goes away the
// registration fails and /readyz (--readyz-registration) says the node is not
// ready; turning registration off removes it.
func TestCarrierRegistration(t *testing.T) {
	ca := cxcotest.NewCA(t, "carrier-test-ca")
	reg := startRegistrar(t, ca, "gw-account", "s3cret-digest", 4)
	gwCert, gwKey, _ := ca.Issue("gateway")
	clientCert, clientKey, _ := ca.Issue("trunk-client")
	tlsPort := cxcotest.FreePort(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{
		"--sip-tls", fmt.Sprintf("127.0.0.1:%d", tlsPort), "--sip-tls-cert", gwCert, "--sip-tls-key", gwKey,
		"--sip-tls-ca", ca.File, "--register-retry", "200ms", "--readyz-registration"}})
	tn := g.NewTenant("Registered")
	g.AddNumber("+27211234567", "ZA", false)
	_, number := g.PublishAgent(tn, "Registered", "ZA", nil)
	dead := cxcotest.FreePort(t) // nothing listens: the primary registrar is down
	tr := g.Must(201, "POST", "/api/agency/trunks", g.AgencyKey, map[string]any{
		"name": "carrier", "allow": []string{"127.0.0.1/32"}, "username": "gw-account", "password": "s3cret-digest",
		"tls": map[string]any{"client_cert_file": clientCert, "client_key_file": clientKey},
		"registration": map[string]any{"enabled": true, "expires": 60,
			"registrars": []string{fmt.Sprintf("sip:127.0.0.1:%d;transport=tcp", dead), "sips:" + reg.TLS}}})
	id := int64(tr["id"].(float64))

	// Registered at the fallback, then refreshed (Kamailio grants 4 s: we refresh after 2).
	if !reg.WaitLog(20*time.Second, func(log string) bool { return strings.Count(log, "REGISTER accepted") >= 2 }) {
		t.Fatalf("not registered and refreshed; registrations: %v", g.Must(200, "GET", fmt.Sprintf("/api/agency/trunks/%d", id), g.AgencyKey, nil)["registrations"])
	}
	if !strings.Contains(reg.Log(), "over tls") {
		t.Fatalf("the registration did not come over TLS:\n%s", lastLines(reg.Log(), 20))
	}
	_, list := g.Do("GET", "/api/agency/registrations", g.AgencyKey, nil)
	regs := list.([]any)
	if len(regs) != 1 || regs[0].(map[string]any)["state"] != "registered" || regs[0].(map[string]any)["registrar"] != "sips:"+reg.TLS {
		t.Fatalf("registrations: %v", regs)
	}
	res, err := http.Get(g.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := fmt.Sprintf(`cxco_sip_registration_up{trunk="carrier",registrar="sips:%s"} 1`, reg.TLS); !strings.Contains(string(body), want) {
		t.Fatalf("/metrics lacks %s", want)
	}

	// A call from the carrier's side to the registered user.
	csv := filepath.Join(t.TempDir(), "registered.csv")
	if err := os.WriteFile(csv, []byte("SEQUENTIAL\ngw-account;"+strings.TrimPrefix(number, "+")+";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := cxcotest.RunSIPp(t, reg.UDP, "uac_registered.xml", number, "-inf", csv, "-m", "1", "-timeout", "40s")
	if code != 0 {
		t.Fatalf("call through the registration: sipp exit %d\n%s", code, out)
	}
	c := lastConversation(t, g, tn)
	meta, _ := c["metadata_"].(map[string]any)
	sipMeta, _ := meta["sip"].(map[string]any)
	if c["status"] != "completed" || c["called_number"] != number || sipMeta["trunk"] != "carrier" || sipMeta["transport"] != "tls" {
		t.Fatalf("conversation: status %v called %v metadata %v", c["status"], c["called_number"], meta)
	}

	// The registrar goes away: the next refresh fails (and so does the dead
	// primary), the registration is failed, and with --readyz-registration the
	// node says it is not ready.
	if code := readyz(t, g); code != 200 {
		t.Fatalf("/readyz %d while registered", code)
	}
	_ = reg.cmd.Process.Signal(syscall.SIGTERM)
	<-reg.done
	deadline := time.Now().Add(15 * time.Second)
	for readyz(t, g) != 503 {
		if time.Now().After(deadline) {
			_, l := g.Do("GET", "/api/agency/registrations", g.AgencyKey, nil)
			t.Fatalf("/readyz still ready after the registrar went away; registrations: %v", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, list = g.Do("GET", "/api/agency/registrations", g.AgencyKey, nil)
	if r := list.([]any)[0].(map[string]any); r["state"] != "failed" || r["consecutive_failures"].(float64) < 1 || r["last_error"] == "" {
		t.Fatalf("registration after the registrar went away: %v", r)
	}

	// Registration off: the registration is gone (and would un-REGISTER, Expires 0).
	g.Must(200, "PUT", fmt.Sprintf("/api/agency/trunks/%d", id), g.AgencyKey, map[string]any{"registration": map[string]any{"enabled": false}})
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, list = g.Do("GET", "/api/agency/registrations", g.AgencyKey, nil)
		if l, _ := list.([]any); len(l) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration still listed after it was turned off: %v", list)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
