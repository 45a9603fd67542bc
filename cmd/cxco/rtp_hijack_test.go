package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
)

// inNamedNetNS runs the calling test again inside a network namespace of its own,
// named cxco18-<random> (ip netns), set up by setup (each an `ip` command run in
// it). It returns true in the parent, once the run in the namespace has passed
// (or failed the test), and false in the namespace, where the test goes on.
func inNamedNetNS(t *testing.T, setup [][]string) bool {
	t.Helper()
	if os.Getenv("CXCO_NETNS_NAME") != "" {
		return false
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip (iproute2) is needed to make the test's network namespace")
	}
	name := fmt.Sprintf("cxco18-%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	for _, c := range append([][]string{{"link", "set", "lo", "up"}}, setup...) {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", name, "ip"}, c...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s in %s: %v %s", strings.Join(c, " "), name, err, out)
		}
	}
	bin := cxcotest.Binary(t) // built outside: the namespace has no network for the Go proxy
	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CXCO_NETNS_NAME="+name, "CXCO_TEST_BINARY="+bin)
	out, err := cmd.CombinedOutput()
	t.Logf("in network namespace %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("the test in network namespace %s failed: %v", name, err)
	}
	return true
}

// TestRTPInjectorCannotHijack: an attacker at a second address of the network
// (outside --trunk-allow) sprays RTP at every port of the gateway's RTP range,
// from before the call until after it, racing the caller's first packet. The
// call's audio stays the caller's: the echo line returns the caller's tone, the
// attacker receives nothing, and the refused packets are counted in /metrics.
// (Before, latching took the first packet from anywhere and ports came in order:
// the attacker got the call's audio and the caller heard nothing back.)
func TestRTPInjectorCannotHijack(t *testing.T) {
	if inNamedNetNS(t, [][]string{
		{"addr", "add", "192.0.2.1/32", "dev", "lo"},  // the gateway
		{"addr", "add", "192.0.2.2/32", "dev", "lo"},  // the trunk, and the caller's media
		{"addr", "add", "192.0.2.66/32", "dev", "lo"}, // the attacker
	}) {
		return
	}
	const low, high = 30000, 30099
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{SIPHost: "192.0.2.1", Args: []string{"--public-ip", "192.0.2.1",
		"--trunk-allow", "192.0.2.2/32", "--echo-number", "+15550001", "--rtp-ports", fmt.Sprintf("%d-%d", low, high)}})

	attacker, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("192.0.2.66")})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	var stolen, rounds atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // what the attacker receives
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, _, err := attacker.ReadFromUDP(buf); err != nil {
				return
			}
			stolen.Add(1)
		}
	}()
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // the spray: every even port, a round every 2 ms, at most 30 s
		defer wg.Done()
		pkt := make([]byte, 12+160)
		pkt[0], pkt[1] = 0x80, 0 // RTP version 2, PCMU
		for i := range 160 {
			pkt[12+i] = 0xff
		}
		t0 := time.Now()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; time.Since(t0) < 30*time.Second; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pkt[2], pkt[3] = byte(seq>>8), byte(seq)
			pkt[8], pkt[9], pkt[10], pkt[11] = 0xde, 0xad, 0xbe, 0xef
			for port := low; port <= high; port += 2 {
				_, _ = attacker.WriteToUDP(pkt, &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: port})
			}
			rounds.Add(1)
		}
	}()
	defer func() { close(stop); attacker.Close(); wg.Wait() }()

	ph, code := cxcotest.DialFrom(t, "192.0.2.2", fmt.Sprintf("192.0.2.1:%d", g.SIPPort), "+15550001", "PCMU")
	if code != 200 {
		t.Fatalf("the call: %d", code)
	}
	// Let the spray reach the call's port many times before the caller speaks.
	r0 := rounds.Load()
	cxcotest.Eventually(t, 10*time.Second, "50 rounds of spray after the answer", func() bool { return rounds.Load() >= r0+50 })
	before := len(ph.Audio())
	ph.SendAudio(cxcotest.Tone(1000, -10, time.Second))
	ph.SendAudio(make([]int16, 8000*15/10))
	echo := toneRegion(ph.Audio()[before:])
	if echo == nil {
		t.Fatalf("the caller heard no echo; the attacker received %d packets", stolen.Load())
	}
	if f := audiotest.DominantFrequency(echo, 8000); math.Abs(f-1000) > 5 {
		t.Fatalf("the caller heard %.0f Hz, not its own 1000 Hz", f)
	}
	ph.Hangup()
	if n := stolen.Load(); n != 0 {
		t.Fatalf("the attacker received %d packets of the call", n)
	}
	refused := metricValue(t, keptAliveClient(t, g.HTTP), g.HTTP, `cxco_rtp_source_packets_total{decision="refused"}`)
	if refused == 0 {
		t.Fatal("no refused RTP counted")
	}
	t.Logf("%d spray rounds over %d ports; the gateway refused %.0f packets; the attacker received none; the caller heard its tone",
		rounds.Load(), (high-low)/2+1, refused)
}
