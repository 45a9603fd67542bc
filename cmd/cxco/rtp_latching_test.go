package main

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
)

// TestRTPLatchingBehindNAT: a trunk behind NAT names its private address
// (10.9.9.9) in the SDP while its RTP comes from the address its SIP comes from.
// By default (--rtp-latching off) that RTP is refused and counted, and the node
// warns at call setup that the SDP's address is outside the trunk's networks;
// with --rtp-latching signalling_source the call latches to the signalling
// address and the caller hears its echo, nothing refused. (The source policy
// itself is tested in media; this is its wiring from the flag to the call.)
func TestRTPLatchingBehindNAT(t *testing.T) {
	for _, latch := range []bool{false, true} {
		t.Run(fmt.Sprintf("latching=%v", latch), func(t *testing.T) {
			args := []string{"--echo-number", "+15550001", "--trunk-allow", "127.0.0.0/8"}
			if latch {
				args = append(args, "--rtp-latching", "signalling_source")
			}
			g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: args})
			hc := keptAliveClient(t, g.HTTP)
			refused := func() float64 {
				return metricValue(t, hc, g.HTTP, `cxco_rtp_source_packets_total{decision="refused"}`)
			}
			ph, code := cxcotest.DialBehindNAT(t, "10.9.9.9", fmt.Sprintf("127.0.0.1:%d", g.SIPPort), "+15550001", "PCMU")
			if code != 200 {
				t.Fatalf("the call: %d", code)
			}
			defer ph.Hangup()
			before := len(ph.Audio())
			ph.SendAudio(cxcotest.Tone(1000, -10, time.Second))
			if !latch {
				g.Proc.WaitStderr(t, "the SDP's media address is outside the trunk's allowed networks", 10*time.Second)
				cxcotest.Eventually(t, 10*time.Second, "the caller's RTP refused", func() bool { return refused() >= 40 })
				if n := len(ph.Packets()); n != 0 {
					t.Fatalf("the phone got %d RTP packets: the node latched to media it should refuse", n)
				}
				return
			}
			ph.SendAudio(make([]int16, 8000*15/10))
			echo := toneRegion(ph.Audio()[before:])
			if echo == nil {
				t.Fatalf("no echo through the NAT; %v packets refused", refused())
			}
			if f := audiotest.DominantFrequency(echo, 8000); math.Abs(f-1000) > 5 {
				t.Fatalf("the caller heard %.0f Hz, not its own 1000 Hz", f)
			}
			if n := refused(); n != 0 {
				t.Fatalf("%v packets refused with latching on", n)
			}
		})
	}
}
