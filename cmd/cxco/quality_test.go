package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/quality"
)

// The impaired test network: the caller (this test, run again in a network
// namespace of its own) at callerIP, the gateways in another namespace at
// gatewayIP, joined by a veth pair; both addresses are in 198.18.0.0/15, the
// block set aside for benchmarking networks (RFC 2544), and exist only inside
// the two namespaces.
const (
	callerIP  = "198.18.17.1"
	gatewayIP = "198.18.17.2"
	macCaller = "02:c7:17:00:00:01"
	macGW     = "02:c7:17:00:00:02"
	impTUN    = "cxqimp0"
	impTable  = "117"
	// testNice is how much higher than other work the test network and its
	// gateways run.
	testNice = 15
)

// qualityProfiles are the impairments, netem's parameters (see cxcotest.Netem),
// on the caller's side: what the caller sends is lost, delayed, reordered and
// duplicated; what comes back is not (so the score is the gateway's doing).
var qualityProfiles = []*cxcotest.Netem{
	{Name: "clean", Seed: 1},
	{Name: "random loss 2%", Loss: 0.02, Seed: 2},
	{Name: "random loss 5%", Loss: 0.05, Seed: 3},
	{Name: "bursty loss (Gilbert-Elliott) 4.8%, bursts of 3.3", GE: &cxcotest.GilbertElliott{P: 0.015, R: 0.30, H: 0, K: 1}, Seed: 4},
	{Name: "jitter 20 ms", Delay: 40 * time.Millisecond, Jitter: 20 * time.Millisecond, Seed: 5},
	{Name: "jitter 60 ms", Delay: 80 * time.Millisecond, Jitter: 60 * time.Millisecond, Seed: 6},
	{Name: "reordering 10%, duplicates 5%", Delay: 20 * time.Millisecond, Reorder: 0.10, Duplicate: 0.05, Seed: 7},
	{Name: "bad mobile: bursty loss 2.4%, jitter 20 ms, reordering, duplicates", GE: &cxcotest.GilbertElliott{P: 0.01, R: 0.40, H: 0, K: 1},
		Delay: 50 * time.Millisecond, Jitter: 20 * time.Millisecond, Reorder: 0.05, Duplicate: 0.01, Seed: 8},
}

// inImpairedNet sets the test network up and runs the calling test again in the
// caller's namespace: it returns true in the parent, once that run has passed
// (or failed the test), and false in the child, which goes on, with the
// gateways' namespace in CXCO_QNET_GW.
func inImpairedNet(t *testing.T) bool {
	t.Helper()
	if os.Getenv("CXCO_QNET_GW") != "" {
		return false
	}
	for _, tool := range []string{"ip", "espeak-ng"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (apt-get install -y iproute2 espeak-ng; deploy/test.sh installs espeak-ng)", tool)
		}
	}
	suffix := fmt.Sprintf("%05d%03x", os.Getpid()%100000, rand.IntN(0x1000))
	callerNS, gwNS := "cxq-c-"+suffix, "cxq-g-"+suffix
	vethC, vethG := "vqc"+suffix, "vqg"+suffix
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", callerNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", callerNS).Run() })
	ip("netns", "add", gwNS)
	t.Cleanup(func() {
		// Whatever this test started in the gateways' namespace (a gateway its
		// child could not stop, if it died) goes with it.
		if out, err := exec.Command("ip", "netns", "pids", gwNS).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		_ = exec.Command("ip", "netns", "del", gwNS).Run()
	})
	ip("link", "add", vethC, "netns", callerNS, "address", macCaller, "type", "veth", "peer", "name", vethG, "netns", gwNS, "address", macGW)
	ip("-n", callerNS, "addr", "add", callerIP+"/24", "dev", vethC)
	ip("-n", gwNS, "addr", "add", gatewayIP+"/24", "dev", vethG)
	for _, ns := range [][2]string{{callerNS, vethC}, {gwNS, vethG}} {
		ip("-n", ns[0], "link", "set", "lo", "up")
		ip("-n", ns[0], "link", "set", ns[1], "up")
	}
	// Built outside: the namespaces have no network for the Go proxy.
	bin, plain := cxcotest.Binary(t), cxcotest.PlainBinary(t)
	// The test network runs at a raised priority, the gateways with it: it
	// measures what the network's impairments do to the audio, so its timing
	// must be the network's and not that of whatever else keeps this machine
	// busy (other tests, stress-ng). The gateway under CPU contention is the
	// load test's subject (deploy/loadtest).
	cmd := exec.Command("nice", "-n", fmt.Sprint(-testNice), "ip", "netns", "exec", callerNS, os.Args[0], "-test.run", "^"+t.Name()+"$",
		"-test.count=1", "-test.v", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), "CXCO_QNET_GW="+gwNS, "CXCO_QNET_VETH="+vethC, "CXCO_TEST_BINARY="+bin, "CXCO_TEST_PLAIN_BINARY="+plain)
	out, err := cmd.CombinedOutput()
	t.Logf("in the caller's namespace %s (gateways in %s):\n%s", callerNS, gwNS, out)
	if err != nil {
		t.Fatalf("the test in the impaired network failed: %v", err)
	}
	return true
}

// qualityCall is one call of the test: a profile, a gateway (concealment), a path.
type qualityCall struct {
	prof    *cxcotest.Netem
	plc     string            // the gateway's --plc
	path    string            // "echo" or "agent"
	scores  []audiotest.Score // per utterance
	lost    []audiotest.Score // per utterance, over the segments the network lost
	imp     cxcotest.FlowStats
	gw      map[string]any // the gateway's media stats for the call
	r, mos  float64        // the E-model from what was measured
	gwMOS   float64
	loss    float64
	burstR  float64
	delay   time.Duration
	failure string
	score   func()       // scores the call once every call is over
	first   *qualityCall // the measurement this one repeats
}

func (c *qualityCall) mean(f func(audiotest.Score) float64) float64 {
	var s float64
	for _, x := range c.scores {
		s += f(x)
	}
	return s / float64(max(len(c.scores), 1))
}

// meanLost is f over the segments the network lost, all utterances together;
// NaN if it lost none of the speech.
func (c *qualityCall) meanLost(f func(audiotest.Score) float64) float64 {
	var s float64
	var n int
	for _, x := range c.lost {
		s += f(x) * float64(x.Segments)
		n += x.Segments
	}
	if n == 0 {
		return math.NaN()
	}
	return s / float64(n)
}

// TestAudioQualityImpairedNetwork sends real speech (espeak-ng sentences) from a
// Go phone through an impaired network — random and Gilbert-Elliott bursty loss,
// 20 and 60 ms of jitter, reordering, duplicates, each a netem profile applied
// on the caller's side — to two gateways, one concealing losses by pitch
// repetition (G.711 Appendix I, the default) and one by the old repeat-and-fade,
// each through the echo line (µ-law, the media engine alone) and through an agent
// of the provider simulator (A-law caller, pcm_16000 agent: decode, 8→16 kHz,
// the websocket, the simulator's echo of the utterance, 16→8 kHz, encode). Per
// utterance it scores what came back against what was sent (time-aligned
// segmental SNR, frequency-weighted segmental SNR, log-spectral distance), and
// per call the E-model's R and MOS from the loss the network caused, the late
// drops, the network delay and the jitter buffer's mean depth. It fails when a
// score falls below its threshold (qualityFloor), set a few per cent under
// what was measured, also with both cores busy (stress-ng --cpu 2).
//
// CXCO_QUALITY_REPORT=file writes the table of deploy/loadtest/PERFORMANCE.md;
// CXCO_QUALITY_WAV=dir keeps each utterance as sent and as heard (8 kHz WAV);
// CXCO_QUALITY_ONLY=text runs only the profiles whose name contains it.
func TestAudioQualityImpairedNetwork(t *testing.T) {
	if inImpairedNet(t) {
		return
	}
	gwNS, veth := os.Getenv("CXCO_QNET_GW"), os.Getenv("CXCO_QNET_VETH")
	mac, _ := net.ParseMAC(macGW)
	im, err := cxcotest.StartImpairer(impTUN, veth, mac)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	for _, args := range [][]string{
		{"link", "set", impTUN, "up"},
		{"route", "add", gatewayIP + "/32", "dev", impTUN, "table", impTable},
		// UDP (SIP and RTP) to the gateways goes through the impairer, the API's
		// TCP straight over the veth.
		{"rule", "add", "ipproto", "udp", "to", gatewayIP, "lookup", impTable},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	// Replies come in on the veth from an address routed into the TUN: no
	// reverse-path filter.
	for _, dev := range []string{"all", "default", veth} {
		_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/rp_filter", []byte("0"), 0o644)
	}

	var sentences [][]int16
	for _, s := range audiotest.Sentences[:3] {
		x, err := audiotest.Speech(s, 8000)
		if err != nil {
			t.Fatal(err)
		}
		sentences = append(sentences, x)
	}

	type gateway struct {
		g      *cxcotest.Gateway
		number string
	}
	gws := map[string]gateway{}
	for _, plc := range []string{"pitch", "fade"} {
		g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{NetNS: gwNS, Host: gatewayIP, Plain: true,
			Args: []string{"--echo-number", "+15550001", "--plc", plc, "--trunk-allow", callerIP + "/32"}})
		tn := g.NewTenant("Quality " + plc)
		g.AddNumber("+27211230017", "ZA", false)
		_, number := g.PublishAgent(tn, "Echo", "ZA", map[string]any{"audio_format": "pcm_16000"})
		gws[plc] = gateway{g, number}
	}

	var calls []*qualityCall
	for _, p := range qualityProfiles {
		if only := os.Getenv("CXCO_QUALITY_ONLY"); only != "" && !strings.Contains(p.Name, only) {
			continue
		}
		for _, plc := range []string{"pitch", "fade"} {
			for _, path := range []string{"echo", "agent"} {
				calls = append(calls, &qualityCall{prof: p, plc: plc, path: path})
			}
		}
	}
	// The echo calls together, then the agent calls: 16 at a time. Calls in
	// step would answer at the same moments and load the machine in bursts:
	// each starts 150 ms after the one before.
	runWave := func(wave []*qualityCall) {
		var wg sync.WaitGroup
		for i, c := range wave {
			wg.Add(1)
			go func(delay time.Duration) {
				defer wg.Done()
				<-time.After(delay)
				gw := gws[c.plc]
				number := "+15550001"
				codec := "PCMU"
				if c.path == "agent" {
					number, codec = gw.number, "PCMA"
				}
				c.run(t, im, gw.g, number, codec, sentences)
			}(time.Duration(i) * 150 * time.Millisecond)
		}
		wg.Wait()
		for _, c := range wave {
			if c.score != nil {
				c.score()
			}
		}
	}
	for _, path := range []string{"echo", "agent"} {
		var wave []*qualityCall
		for _, c := range calls {
			if c.path == path {
				wave = append(wave, c)
			}
		}
		runWave(wave)
	}
	// A measurement the machine disturbed (a stall of a few hundred ms in the
	// phones or the gateways shows as late packets and damaged utterances) is
	// made again, once, for both concealments: a pair that fails twice fails.
	var again []*qualityCall
	for _, c := range calls {
		why := c.belowFloor()
		if c.plc != "pitch" || why == "" {
			continue
		}
		t.Logf("%s, %s: measured again: %s", c.prof.Name, c.path, why)
		for i, o := range calls {
			if o.prof == c.prof && o.path == c.path {
				calls[i] = &qualityCall{prof: o.prof, plc: o.plc, path: o.path, first: o}
				again = append(again, calls[i])
			}
		}
	}
	if len(again) > 0 {
		runWave(again)
	}
	if err := im.Err(); err != nil {
		t.Fatal(err)
	}

	for _, c := range calls {
		var u []string
		for _, s := range c.scores {
			u = append(u, fmt.Sprintf("%.1f/%.1f/%.2f (delay %d, %d shifts, %d bad)", s.SegSNR, s.FwSegSNR, s.LSD, s.Delay, s.Shifts, s.Worst))
		}
		t.Logf("%s, %s, %s: network: %s (mean delay %v); gateway late %v, concealed %v, depth avg %v max %v, jitter %v; utterances %s",
			c.prof.Name, c.plc, c.path, c.imp.Summary(), c.imp.MeanDelay(), c.gw["late"], c.gw["concealed"], c.gw["jitter_depth_avg"], c.gw["jitter_depth_max"],
			c.gw["jitter"], strings.Join(u, ", "))
	}
	report := qualityReport(calls)
	t.Log("\n" + report)
	if f := os.Getenv("CXCO_QUALITY_REPORT"); f != "" {
		if err := os.WriteFile(f, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
	fwSeg := func(s audiotest.Score) float64 { return s.FwSegSNR }
	lsdOf := func(s audiotest.Score) float64 { return s.LSD }
	var gain struct{ fw, lsd, n float64 }
	for _, c := range calls {
		if c.failure != "" {
			t.Errorf("%s, %s, %s: %s", c.prof.Name, c.plc, c.path, c.failure)
			continue
		}
		// The gateway counts the network's losses as the network made them
		// (RFC 3550's cumulative loss; duplicates and reordering do not count;
		// nor can losses before the first or after the last packet delivered).
		if gl, nl := num(c.gw["lost"]), c.imp.Lost-c.imp.LostAtEnds; math.Abs(gl-float64(nl)) > 2 {
			t.Errorf("%s, %s, %s: the gateway counted %v packets lost, the network lost %d between its first and last packet delivered (%d in all)",
				c.prof.Name, c.plc, c.path, gl, nl, c.imp.Lost)
		}
		if c.plc == "fade" {
			continue
		}
		if why := c.belowFloor(); why != "" {
			t.Errorf("%s, %s: %s", c.prof.Name, c.path, why)
		}
		// The concealment's own gain: the same lost segments, old against new.
		for _, o := range calls {
			if o.prof == c.prof && o.path == c.path && o.plc == "fade" {
				if n, m := c.meanLost(fwSeg), o.meanLost(fwSeg); !math.IsNaN(n) && !math.IsNaN(m) {
					gain.fw += n - m
					gain.lsd += o.meanLost(lsdOf) - c.meanLost(lsdOf)
					gain.n++
				}
			}
		}
	}
	t.Logf("pitch over fade on the lost segments, mean over the %.0f lossy calls: fwSegSNR %+.2f dB, LSD %+.2f dB (lower)", gain.n, gain.fw/gain.n, gain.lsd/gain.n)
	// Judged on the frequency-weighted SNR, the measure that follows listeners
	// best; the log-spectral distance's gain (positive in 10 of 12 runs while
	// the thresholds were set) is logged. media/plc's and media/jitter's tests
	// judge both on fixed losses.
	if gain.n == 0 || gain.fw <= 0 {
		t.Errorf("the pitch concealment did not beat repeat-and-fade on the lost segments: fwSegSNR %+.2f dB, LSD %+.2f dB over %.0f calls",
			gain.fw/gain.n, gain.lsd/gain.n, gain.n)
	}
}

// run makes one call: the phone dials, waits out the agent's opening line, says
// each sentence and waits for it to come back, then hangs up; the scores and the
// E-model figures go into c.
func (c *qualityCall) run(t *testing.T, im *cxcotest.Impairer, g *cxcotest.Gateway, number, codec string, sentences [][]int16) {
	ph, code := cxcotest.DialFrom(t, callerIP, net.JoinHostPort(gatewayIP, fmt.Sprint(g.SIPPort)), number, codec)
	if code != 200 {
		c.failure = fmt.Sprintf("answered %d", code)
		return
	}
	_, rtpPort := ph.Ports()
	im.Assign(rtpPort, c.prof)
	start := time.Now()
	if c.path == "agent" {
		// The opening line first: talking over it would interrupt it.
		if !waitQuiet(ph, start, 15*time.Second) {
			c.failure = "the agent's opening line did not end"
			ph.Hangup()
			return
		}
	}
	var at []time.Time
	var ts []uint32
	for _, s := range sentences {
		at = append(at, time.Now())
		ts = append(ts, ph.NextTimestamp())
		ph.SendAudio(s)
		if !waitQuiet(ph, at[len(at)-1], 20*time.Second) {
			c.failure = "an utterance did not come back"
			break
		}
	}
	end := time.Now()
	ph.Hangup()
	c.imp = im.Stats(rtpPort)
	// Reading the gateway's log and scoring take a while (seconds under the
	// race detector): after all the calls, so as not to hold up the phones
	// still talking.
	c.score = func() {
		c.gw = mediaClosed(t, g, ph.CallID())
		c.scoreCall(ph, codec, sentences[:len(at)], at, ts, end)
	}
}

// scoreCall scores the utterances of a call, and the E-model.
func (c *qualityCall) scoreCall(ph *cxcotest.Phone, codec string, sentences [][]int16, at []time.Time, ts []uint32, end time.Time) {
	for i, s := range sentences {
		to := end
		if i+1 < len(at) {
			to = at[i+1]
		}
		got := receivedBetween(ph, at[i], to)
		// What was sent is the sentence as the phone's G.711 coded it: the
		// coding noise is the phone's, not the gateway's or the network's.
		ref := make([]int16, len(s))
		coded := make([]byte, len(s))
		if codec == "PCMA" {
			g711.PCMToALaw(coded, s)
			g711.ALawToPCM(ref, coded)
		} else {
			g711.PCMToULaw(coded, s)
			g711.ULawToPCM(ref, coded)
		}
		s = ref
		var lostSegs []int
		for _, l := range c.imp.LostTS {
			if k := int(int32(l-ts[i])) / 160; int32(l-ts[i]) >= 0 && k*160 < len(s) {
				lostSegs = append(lostSegs, k)
			}
		}
		all, lost := audiotest.CompareSegments(s, got, 8000, lostSegs)
		c.scores = append(c.scores, all)
		c.lost = append(c.lost, lost)
		if dir := os.Getenv("CXCO_QUALITY_WAV"); dir != "" {
			name := fmt.Sprintf("%s/%s-%s-%s-%d", dir, strings.Fields(c.prof.Name)[0]+fmt.Sprint(c.prof.Seed), c.plc, c.path, i)
			_ = audiotest.WriteWAV(name+"-sent.wav", 8000, s)
			_ = audiotest.WriteWAV(name+"-heard.wav", 8000, got)
		}
	}
	c.rate()
}

// rate is the E-model on what was measured: the packets the network lost and
// those the gateway's jitter buffer dropped as late, the network's mean delay,
// a packet's 20 ms and the jitter buffer's mean depth.
func (c *qualityCall) rate() {
	late := num(c.gw["late"])
	pk := float64(c.imp.Packets)
	if pk == 0 {
		return
	}
	c.loss = (float64(c.imp.Lost) + late) / pk
	runs := float64(c.imp.LossRuns) + late // late drops: assume alone
	c.burstR = quality.BurstRatio(float64(c.imp.Lost)+late, runs, pk)
	depth, _ := time.ParseDuration(fmt.Sprint(c.gw["jitter_depth_avg"]))
	c.delay = c.imp.MeanDelay() + 20*time.Millisecond + depth
	codec := quality.G711PLC
	if c.plc != "pitch" {
		codec = quality.G711
	}
	c.r = quality.R(quality.Impairments{Delay: c.delay, Loss: c.loss, BurstR: c.burstR, Codec: codec})
	c.mos = quality.MOS(c.r)
	c.gwMOS = num(c.gw["mos"])
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// waitQuiet sends silence until the phone has received audio (a packet louder
// than -40 dBFS) after since and then a second without; false after limit. It looks
// at each packet once: the phones of the test share the machine with what they
// test, and must keep time.
func waitQuiet(ph *cxcotest.Phone, since time.Time, limit time.Duration) bool {
	chunk := make([]int16, 800) // 100 ms
	deadline := time.Now().Add(limit)
	seen, loud, quiet := 0, false, 0
	x := make([]int16, 160)
	for time.Now().Before(deadline) {
		ph.SendAudio(chunk)
		pk := ph.PacketsFrom(seen)
		seen += len(pk)
		for _, p := range pk {
			if p.At.Before(since) || (p.PT != 0 && p.PT != 8) {
				continue
			}
			x = x[:len(p.Payload)]
			if p.PT == 8 {
				g711.ALawToPCM(x, p.Payload)
			} else {
				g711.ULawToPCM(x, p.Payload)
			}
			if audiotest.RMSDBFS(x) > -40 {
				loud, quiet = true, 0
			} else {
				quiet += len(x)
			}
		}
		if loud && quiet >= 8000 {
			return true
		}
	}
	return false
}

// receivedBetween decodes the audio packets that arrived in [from, to), in
// sequence order.
func receivedBetween(ph *cxcotest.Phone, from, to time.Time) []int16 {
	var pk []cxcotest.Packet
	for _, p := range ph.Packets() {
		if !p.At.Before(from) && p.At.Before(to) && (p.PT == 0 || p.PT == 8) {
			pk = append(pk, p)
		}
	}
	slices.SortStableFunc(pk, func(a, b cxcotest.Packet) int { return int(int16(a.Seq - b.Seq)) })
	out := make([]int16, 0, len(pk)*160)
	x := make([]int16, 160)
	for _, p := range pk {
		x = x[:len(p.Payload)]
		if p.PT == 8 {
			g711.ALawToPCM(x, p.Payload)
		} else {
			g711.ULawToPCM(x, p.Payload)
		}
		out = append(out, x...)
	}
	return out
}

// mediaClosed waits for the gateway's "media closed" log line of a call (it
// follows the BYE's answer) and returns its stats.
func mediaClosed(t *testing.T, g *cxcotest.Gateway, callID string) map[string]any {
	var stats map[string]any
	found := func(log string) bool {
		sc := bufio.NewScanner(strings.NewReader(log))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, `"media closed"`) || !strings.Contains(line, callID) {
				continue
			}
			var m struct {
				SIPCallID string         `json:"sip_call_id"`
				Stats     map[string]any `json:"stats"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.SIPCallID == callID {
				stats = m.Stats
				return true
			}
		}
		return false
	}
	if !g.Proc.WaitLog(10*time.Second, found) {
		t.Errorf("no 'media closed' line for %s", callID)
		return map[string]any{}
	}
	return stats
}

// floor is what a call must score at least (LSD: at most).
type floor struct{ seg, fw, lsd, mos float64 }

// qualityMeasured is what the pitch-concealing gateway scored, per profile (by
// the start of its name) and path: the lowest (LSD: highest) of three runs on
// the 2-core machine, shared with other work (load average 7-12): go test; go
// test -race (the phones and the impairer under the race detector, the
// gateways built plain); and go test -race beside stress-ng --cpu 2 (load
// average 25). The last is the lowest almost everywhere.
var qualityMeasured = map[[2]string]floor{
	{"clean", "echo"}:           {seg: 33.07, fw: 33.04, lsd: 0.55, mos: 3.97},
	{"clean", "agent"}:          {seg: 33.18, fw: 33.11, lsd: 0.28, mos: 4.29},
	{"random loss 2%", "echo"}:  {seg: 32.65, fw: 32.63, lsd: 0.52, mos: 3.83},
	{"random loss 2%", "agent"}: {seg: 31.96, fw: 31.89, lsd: 0.52, mos: 4.12},
	{"random loss 5%", "echo"}:  {seg: 30.81, fw: 30.70, lsd: 0.95, mos: 3.39},
	{"random loss 5%", "agent"}: {seg: 31.08, fw: 30.89, lsd: 0.75, mos: 3.79},
	{"bursty loss", "echo"}:     {seg: 31.88, fw: 31.93, lsd: 0.72, mos: 3.59},
	{"bursty loss", "agent"}:    {seg: 31.35, fw: 31.35, lsd: 0.71, mos: 3.75},
	{"jitter 20 ms", "echo"}:    {seg: 34.40, fw: 34.29, lsd: 0.13, mos: 3.83},
	{"jitter 20 ms", "agent"}:   {seg: 33.07, fw: 33.01, lsd: 0.30, mos: 4.21},
	{"jitter 60 ms", "echo"}:    {seg: 33.69, fw: 33.69, lsd: 0.26, mos: 3.29},
	{"jitter 60 ms", "agent"}:   {seg: 32.76, fw: 32.71, lsd: 0.37, mos: 3.64},
	{"reordering", "echo"}:      {seg: 34.76, fw: 34.77, lsd: 0.04, mos: 3.91},
	{"reordering", "agent"}:     {seg: 32.80, fw: 32.77, lsd: 0.34, mos: 4.23},
	{"bad mobile", "echo"}:      {seg: 31.83, fw: 31.94, lsd: 0.73, mos: 3.20},
	{"bad mobile", "agent"}:     {seg: 31.98, fw: 32.09, lsd: 0.54, mos: 3.49},
}

// belowFloor says why the call's scores are under its floor; "" if they are not.
func (c *qualityCall) belowFloor() string {
	if c.failure != "" {
		return c.failure
	}
	for i, s := range c.scores {
		if s.Segments < 50 {
			return fmt.Sprintf("utterance %d: %d segments scored: it did not come back whole", i, s.Segments)
		}
	}
	fl, ok := qualityFloor(c)
	if !ok {
		return "no threshold for the profile"
	}
	fw, lsd, sg := c.mean(func(s audiotest.Score) float64 { return s.FwSegSNR }), c.mean(func(s audiotest.Score) float64 { return s.LSD }),
		c.mean(func(s audiotest.Score) float64 { return s.SegSNR })
	if fw < fl.fw || lsd > fl.lsd || sg < fl.seg || c.mos < fl.mos {
		return fmt.Sprintf("fwSegSNR %.2f dB (floor %.2f), LSD %.2f dB (ceiling %.2f), segSNR %.2f dB (floor %.2f), MOS %.2f (floor %.2f)",
			fw, fl.fw, lsd, fl.lsd, sg, fl.seg, c.mos, fl.mos)
	}
	return ""
}

// qualityFloor is the threshold of a call: 10% under the segmental SNRs
// measured, twice (at least 0.75 dB over) the log-spectral distance (a distance
// near 0 has no "few per cent"), and 20% under the MOS, which also carries the
// jitter buffer's late drops, and those grow with the machine's load. The
// margins are for the machine, not for the gateway: at 5% and 0.25 dB a full
// suite at load average 8-14 failed calls whose only fault was packets the
// busy machine delivered late (fwSegSNR 31.96 against a floor of 32.01, LSD
// 1.01 against 0.96; the agent path's LSD 0.82 against 0.80 with the margin
// at 50% or 0.5 dB, its clean calls at 0.54 where 0.28 had been measured). A path that adds distortion (a wrong resampler, a
// broken jitter buffer) costs several dB on every profile and still fails;
// the concealment itself is judged below, on its gain over the old one on
// the same calls, which the machine's load does not move.
func qualityFloor(c *qualityCall) (floor, bool) {
	for k, m := range qualityMeasured {
		if k[1] == c.path && strings.HasPrefix(c.prof.Name, k[0]) {
			return floor{seg: 0.9 * m.seg, fw: 0.9 * m.fw, lsd: max(2*m.lsd, m.lsd+0.75), mos: 0.8 * m.mos}, true
		}
	}
	return floor{}, false
}

// qualityReport is the table: one row per profile and path, the new
// concealment (pitch) and the old (fade) side by side as "new / old".
func qualityReport(calls []*qualityCall) string {
	var b strings.Builder
	b.WriteString("| impairment (netem, caller's side) | path | lost / late pkts | delay: network + JB avg | R, MOS new / old | gateway's MOS new / old | segSNR dB new / old | fwSegSNR dB new / old | LSD dB new / old | lost segments: n, segSNR / fwSegSNR / LSD, new vs old |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	find := func(p *cxcotest.Netem, plc, path string) *qualityCall {
		for _, c := range calls {
			if c.prof == p && c.plc == plc && c.path == path {
				return c
			}
		}
		return nil
	}
	seg := func(s audiotest.Score) float64 { return s.SegSNR }
	fw := func(s audiotest.Score) float64 { return s.FwSegSNR }
	lsd := func(s audiotest.Score) float64 { return s.LSD }
	for _, p := range qualityProfiles {
		for _, path := range []string{"echo", "agent"} {
			n, o := find(p, "pitch", path), find(p, "fade", path)
			if n == nil || o == nil {
				continue
			}
			var lostN int
			for _, x := range n.lost {
				lostN += x.Segments
			}
			lost := "—"
			if lostN > 0 {
				lost = fmt.Sprintf("%d: %.1f / %.1f / %.2f vs %.1f / %.1f / %.2f", lostN, n.meanLost(seg), n.meanLost(fw), n.meanLost(lsd),
					o.meanLost(seg), o.meanLost(fw), o.meanLost(lsd))
			}
			depth, _ := time.ParseDuration(fmt.Sprint(n.gw["jitter_depth_avg"]))
			if n.first != nil {
				path += " (again†)"
			}
			fmt.Fprintf(&b, "| %s: `%s` | %s | %d / %.0f | %.0f + %.0f ms | %.1f, %.2f / %.1f, %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %s |\n",
				p.Name, strings.TrimPrefix(p.String(), "tc qdisc add dev $DEV root netem "), path, n.imp.Lost, num(n.gw["late"]),
				float64(n.imp.MeanDelay().Microseconds())/1000, float64(depth.Microseconds())/1000,
				n.r, n.mos, o.r, o.mos, n.gwMOS, o.gwMOS, n.mean(seg), o.mean(seg), n.mean(fw), o.mean(fw), n.mean(lsd), o.mean(lsd), lost)
		}
	}
	return b.String()
}
