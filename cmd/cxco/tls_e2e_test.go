package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
)

// tlsSerial dials the TLS port, verifies the gateway against the CA and returns
// the serial of the certificate it presents.
func tlsSerial(t *testing.T, addr, caFile string) int64 {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestSIPOverTLS: baresip (a softphone nobody here wrote) calls the echo line over
// TLS (transport=tls, the gateway's certificate checked against the test's CA);
// mid-call the certificate files are replaced and SIGHUP makes the gateway read
// them: new connections get the new certificate while the call goes on over its
// connection, audio both ways (checked as audio: the 1 kHz tone it sent comes
// back), until baresip hangs up with a BYE on it. (baresip 1.0 cannot dial a
// sips: URI; transport=tls is what it sends.)
func TestSIPOverTLS(t *testing.T) {
	ca := cxcotest.NewCA(t, "tls-test-ca")
	certA, keyA, serialA := ca.Issue("gateway-a")
	certB, keyB, serialB := ca.Issue("gateway-b")
	// The gateway reads these paths; the test swaps their content.
	cert, key := certA+".live", keyA+".live"
	copyFile(t, certA, cert)
	copyFile(t, keyA, key)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", cxcotest.FreePort(t))
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", "+15550014",
		"--sip-tls", tlsAddr, "--sip-tls-cert", cert, "--sip-tls-key", key}})
	g.Proc.WaitStdout(t, "SIP TLS:    "+tlsAddr, 10*time.Second)
	if got := tlsSerial(t, tlsAddr, ca.File); got != serialA {
		t.Fatalf("serial %d, want %d", got, serialA)
	}
	tone := audiotest.Sine(8000, 1000, -16, 20*time.Second)
	b := cxcotest.StartBaresip(t, cxcotest.BaresipOptions{Dial: "sip:+15550014@" + tlsAddr + ";transport=tls", CAFile: ca.File,
		Tone: tone, Duration: 8 * time.Second})
	g.Proc.WaitStderr(t, `"msg":"call answered"`, 10*time.Second)
	if !strings.Contains(g.Proc.Stderr(), `"transport":"TLS"`) {
		t.Fatal("the call did not come over TLS")
	}

	// New certificate files, SIGHUP: new connections get them.
	copyFile(t, certB, cert)
	copyFile(t, keyB, key)
	g.Proc.Signal(syscall.SIGHUP)
	g.Proc.WaitStderr(t, "SIGHUP: TLS certificates reloaded", 5*time.Second)
	if got := tlsSerial(t, tlsAddr, ca.File); got != serialB {
		t.Fatalf("after SIGHUP: serial %d, want %d", got, serialB)
	}
	// The call was not dropped: baresip hangs up at its end, over the same connection.
	if !b.Wait(20 * time.Second) {
		t.Fatal("baresip did not finish")
	}
	g.Proc.WaitStderr(t, `"reason":"caller_hangup"`, 5*time.Second)
	// What baresip heard is the echo of what it sent: 1 kHz, for most of the call.
	_, heard := b.Heard(t)
	if len(heard) < 8000*4 {
		t.Fatalf("baresip heard %d samples", len(heard))
	}
	mid := heard[len(heard)/4 : 3*len(heard)/4]
	if f := audiotest.DominantFrequency(mid, 8000); f < 980 || f > 1020 {
		t.Fatalf("baresip heard %.0f Hz, want the 1 kHz echo", f)
	}
	if lvl := audiotest.RMSDBFS(mid); lvl < -26 || lvl > -10 {
		t.Fatalf("echo level %.1f dBFS, sent at -16 (sine RMS -19)", lvl)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
