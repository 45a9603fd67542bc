package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// The traps of an operator's first minutes (issue 14, "Fix first"): each test
// here failed before its fix.

// TestSIPPortBusy: with the SIP port taken (UDP or TCP), `cxco serve` says which
// flag's address is busy and exits non-zero at once, as a busy --http port does.
// It used to hang for ever, deaf to Ctrl-C and SIGTERM (the HTTP server it had
// started was never stopped).
func TestSIPPortBusy(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			var addr string
			if network == "udp" {
				c, err := net.ListenPacket("udp4", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				addr = c.LocalAddr().String()
			} else {
				l, err := net.Listen("tcp4", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				addr = l.Addr().String()
			}
			p := cxcotest.Start(t, cxcotest.Binary(t), nil, "serve", "--http", fmt.Sprintf("127.0.0.1:%d", cxcotest.FreePort(t)),
				"--sip", addr, "--rtp-ports", "40000-40099")
			code := p.Wait(20 * time.Second)
			if code == -1 {
				p.Signal(syscall.SIGTERM)
				if p.Wait(5*time.Second) == -1 {
					t.Fatal("cxco serve with a busy SIP port hangs, and ignores SIGTERM")
				}
				t.Fatal("cxco serve with a busy SIP port hangs until SIGTERM")
			}
			want := fmt.Sprintf("--sip %s: address already in use", addr)
			if code == 0 || !strings.Contains(p.Stderr(), want) {
				t.Fatalf("exit %d; stderr does not say %q:\n%s", code, want, p.Stderr())
			}
		})
	}
}

// TestAdvertiseSIPAddress: `--sip 127.0.0.1:port` without --public-ip advertises
// 127.0.0.1 in Contact and SDP, where the gateway listens; it used to advertise
// the machine's first non-loopback address, where nothing listened, and the call
// died on RTP timeout. The banner says what is advertised, where RTP listens and
// which sources may send SIP.
func TestAdvertiseSIPAddress(t *testing.T) {
	sipPort := cxcotest.FreeUDPPort(t)
	p := cxcotest.Start(t, cxcotest.Binary(t), nil, "serve", "--http", fmt.Sprintf("127.0.0.1:%d", cxcotest.FreePort(t)),
		"--sip", fmt.Sprintf("127.0.0.1:%d", sipPort), "--rtp-ports", "40100-40199", "--echo-number", "+15550009",
		"--trunk-allow", "127.0.0.0/8,192.0.2.0/24")
	p.WaitStdout(t, "Trunks:", 30*time.Second)
	out := p.Stdout()
	for _, want := range []string{"Advertised: 127.0.0.1 in Contact and SDP (the --sip address)", "RTP:        UDP ports 40100-40199 on 127.0.0.1",
		"SIP accepted from 127.0.0.0/8, 192.0.2.0/24 (--trunk-allow)"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", sipPort), "+15550009", "PCMU")
	if code != 200 {
		t.Fatalf("echo call: %d", code)
	}
	defer ph.Close()
	if got := ph.Remote.Addr().String(); got != "127.0.0.1" {
		t.Fatalf("the SDP answer advertises %s, not the --sip address", got)
	}
	ph.SendAudio(cxcotest.Tone(1000, -20, 200*time.Millisecond))
	ph.Hangup()
}

// TestNoACK: a 200 OK that is never acknowledged (the caller is gone) ends the
// call after 64*T1 with end reason no_ack: the provider session is closed at once
// (not after the BYE to a dead peer times out), and the conversation is recorded
// as failed with its duration. It used to be recorded completed, with no
// duration, while the provider session ran 40 s.
func TestNoACK(t *testing.T) {
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--sip-t1", "100ms"}})
	tn := g.NewTenant("No ACK")
	g.AddNumber("+27215550404", "ZA", false)
	_, number := g.PublishAgent(tn, "No ACK", "ZA", nil)
	ph, code := cxcotest.DialSilent(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), number, "PCMU")
	if code != 200 {
		t.Fatalf("INVITE: %d", code)
	}
	defer ph.Close()
	if !ph.WaitBye(20 * time.Second) {
		t.Fatal("no BYE after 64*T1 without an ACK")
	}
	c := lastConversation(t, g, tn)
	if c["status"] != "failed" || c["end_reason"] != "no_ack" || c["duration_seconds"] == nil {
		t.Fatalf("conversation: status %v, end_reason %v, duration %v", c["status"], c["end_reason"], c["duration_seconds"])
	}
	if d := c["duration_seconds"].(float64); d < 5 || d > 9 {
		t.Fatalf("duration %v s; 64*T1 is 6.4 s", d)
	}
	// The far side closed right at the timer, not after the unanswered BYE.
	noACK, closed := logTime(t, g.Proc.Stderr(), "no ACK for our 2xx", ""), logTime(t, g.Proc.Stderr(), "far side closed", "no_ack")
	if gap := closed.Sub(noACK); gap < 0 || gap > time.Second {
		t.Fatalf("the provider session closed %s after the no-ACK timer fired", gap)
	}
}

// logTime finds the first JSON log line with msg (and reason, when given) and
// returns its time.
func logTime(t *testing.T, logs, msg, reason string) time.Time {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time   time.Time `json:"time"`
			Msg    string    `json:"msg"`
			Reason string    `json:"reason"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == msg && (reason == "" || l.Reason == reason) {
			return l.Time
		}
	}
	t.Fatalf("no log line %q (reason %q)", msg, reason)
	return time.Time{}
}

// TestTrunkAllowWarns: an INVITE from a source no trunk allows is still dropped
// without an answer, but it is no longer silent in the logs: one warning per
// source address a minute, with the source, so an operator sees why a carrier's
// calls vanish.
func TestTrunkAllowWarns(t *testing.T) {
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--trunk-allow", "127.0.0.1/32", "--echo-number", "+15550010"}})
	// Three calls from 127.0.0.3, which only 127.0.0.0/8 would allow: no answer.
	for range 3 {
		code, _ := g.SIPp("uac_options.xml", "+15550010", "-i", "127.0.0.3", "-timeout", "2s")
		if code == 0 {
			t.Fatal("a source outside --trunk-allow got an answer")
		}
	}
	g.Proc.WaitStderr(t, `"source":"127.0.0.3"`, 5*time.Second)
	if n := strings.Count(g.Proc.Stderr(), "SIP request dropped: the source is in no trunk's allow list"); n != 1 {
		t.Fatalf("%d warnings for one source within a minute, want 1", n)
	}
	// An allowed source is answered.
	sipp(t, g, "uac_options.xml", "+15550010")
}
