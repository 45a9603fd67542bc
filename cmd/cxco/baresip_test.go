package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g722"
	"github.com/cxco/gateway/media/opus"
)

// hdGateway starts a gateway whose default trunk takes the HD codecs first and
// has the SRTP policy given, with the echo line on +15550001, on 100 RTP ports
// of its own (which the capture filters on).
func hdGateway(t *testing.T, srtp string) (*cxcotest.Gateway, int) {
	low := 20000 + 2*rand.IntN(15000)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", "+15550001",
		"--trunk-codecs", "G722,opus,PCMU,PCMA", "--trunk-srtp", srtp, "--rtp-ports", fmt.Sprintf("%d-%d", low, low+99)}})
	return g, low
}

// TestBaresipSRTPAndHD: baresip calls the echo line with G.722 and Opus, with
// SRTP as srtp-mand (RTP/SAVP) and as srtp (best effort, RTP/AVP with
// a=crypto), and in the clear. It sends a 5 kHz tone: what it hears back must
// be that tone at its level, and 5 kHz cannot pass an 8 kHz stage anywhere on
// the way (decoding, jitter buffer, echo, encoding). A capture on loopback of
// every packet on the gateway's RTP ports proves the SRTP calls carry no plain
// RTP: their payloads decode to no tone, and each carries its 80-bit tag,
// while the same analysis finds the tone in the clear call (the control that
// shows the analysis can fail). A plain offer to a trunk that requires SRTP
// gets 488 with a Reason that says so.
func TestBaresipSRTPAndHD(t *testing.T) {
	if err := opus.Load(); err != nil {
		t.Fatalf("%v (apt-get install libopus0)", err)
	}
	required, reqLow := hdGateway(t, "required")
	optional, optLow := hdGateway(t, "optional")
	cases := []struct {
		name     string
		g        *cxcotest.Gateway
		low      int
		codec    string
		mediaenc string
		srtp     string // the suite the call must run with; "" plain
		refused  string // a 488 with this Reason text
	}{
		{name: "G722 srtp-mand to a required trunk", g: required, low: reqLow, codec: "G722", mediaenc: "srtp-mand", srtp: "AES_CM_128_HMAC_SHA1_80"},
		{name: "opus best-effort srtp to an optional trunk", g: optional, low: optLow, codec: "opus", mediaenc: "srtp", srtp: "AES_CM_128_HMAC_SHA1_80"},
		{name: "G722 in the clear to an optional trunk", g: optional, low: optLow, codec: "G722"},
		{name: "opus in the clear to an optional trunk", g: optional, low: optLow, codec: "opus"},
		{name: "PCMU in the clear to a required trunk", g: required, low: reqLow, codec: "PCMU", refused: "SRTP required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			capture := cxcotest.StartCapture(t, fmt.Sprintf("udp portrange %d-%d", tc.low, tc.low+99))
			before := len(gwEvents(tc.g.Proc.Stderr(), "call answered"))
			call := cxcotest.BaresipCall(t, cxcotest.BaresipCallOptions{Target: fmt.Sprintf("sip:+15550001@127.0.0.1:%d", tc.g.SIPPort),
				Codec: tc.codec, MediaEnc: tc.mediaenc, ToneHz: 5000, Seconds: 4})
			pkts := capture.Stop()
			if tc.refused != "" {
				if !strings.Contains(call.Output, "SIP/2.0 488 Not Acceptable Here") ||
					!strings.Contains(call.Output, `Reason: SIP;cause=488;text="`+tc.refused) {
					t.Fatalf("no 488 with Reason %q:\n%s", tc.refused, tail(call.Output, 40))
				}
				// Only packets between the gateway and this baresip count:
				// other processes on loopback use ports in the gateway's
				// range too (a full run once saw 2 such packets here).
				if n := len(betweenGWAndBaresip(pkts, tc.low, call.RTPPorts)); n != 0 {
					t.Errorf("%d packets between the gateway's RTP ports and baresip's on a refused call", n)
				}
				return
			}
			// The gateway's side: codec and SRTP as expected.
			answered := gwEvents(tc.g.Proc.Stderr(), "call answered")
			if len(answered) != before+1 {
				t.Fatalf("no call answered:\n%s", tail(call.Output, 40))
			}
			a := lastLog(tc.g.Proc.Stderr(), "call answered")
			if a.Codec != tc.codec || a.SRTP != tc.srtp {
				t.Errorf("answered with codec %q, srtp %q; want %q, %q", a.Codec, a.SRTP, tc.codec, tc.srtp)
			}
			// What baresip heard: the 5 kHz tone, at the level it sent.
			heard := loudPart(t, call.Heard, call.HeardRate)
			sent := loudPart(t, call.Sent, call.SentRate)
			f := audiotest.DominantFrequency(heard, float64(call.HeardRate))
			level, want := audiotest.ToneLevelDBFS(heard, float64(call.HeardRate), 5000), audiotest.ToneLevelDBFS(sent, float64(call.SentRate), 5000)
			t.Logf("baresip heard %.1f s at %d Hz: %.0f Hz, %.1f dBFS (sent %.1f dBFS)", float64(len(heard))/float64(call.HeardRate), call.HeardRate, f, level, want)
			if math.Abs(f-5000) > 20 || math.Abs(level-want) > 2 {
				t.Errorf("heard %.0f Hz at %.1f dBFS, want 5000 Hz at %.1f dBFS", f, level, want)
			}
			// The wire.
			toGW, fromGW := rtpFlows(pkts, tc.low, call.RTPPorts)
			if len(toGW) < 100 || len(fromGW) < 100 {
				t.Fatalf("captured %d packets to the gateway and %d from it", len(toGW), len(fromGW))
			}
			for dir, flow := range map[string][][]byte{"to the gateway": toGW, "from the gateway": fromGW} {
				snr := plainTone(t, tc.codec, flow)
				t.Logf("%s: %d packets, tone in the payloads read as plain %s: %.1f dB SNR", dir, len(flow), tc.codec, snr)
				if tc.srtp == "" {
					if !(snr > 10) {
						t.Errorf("%s: the clear call's payloads do not decode to the tone (%.1f dB): the analysis is broken", dir, snr)
					}
					continue
				}
				if snr > 0 {
					t.Errorf("%s: the payloads decode to the tone (%.1f dB SNR): plain RTP on the wire", dir, snr)
				}
				if tc.codec == "G722" {
					for _, p := range flow {
						if len(p) != 12+160+10 {
							t.Fatalf("%s: a %d-byte packet, want 182 (RTP header, 160 bytes of G.722, 80-bit SRTP tag)", dir, len(p))
						}
					}
				}
			}
		})
	}
}

// lastLog is the codec and SRTP suite of the gateway's last log line with msg.
func lastLog(log, msg string) (e struct {
	Codec string `json:"codec"`
	SRTP  string `json:"srtp"`
}) {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"msg":"`+msg+`"`) {
			_ = json.Unmarshal([]byte(l), &e)
		}
	}
	return e
}

// betweenGWAndBaresip keeps the captured packets (RTP, RTCP or anything else)
// between the gateway's 100 RTP ports from low and baresip's RTP ports.
func betweenGWAndBaresip(pkts []cxcotest.UDPPacket, low int, baresip [2]int) []cxcotest.UDPPacket {
	ours := func(p uint16) bool { return int(p) >= low && int(p) < low+100 }
	theirs := func(p uint16) bool { return int(p) >= baresip[0] && int(p) <= baresip[1] }
	var out []cxcotest.UDPPacket
	for _, p := range pkts {
		if ours(p.Src.Port()) && theirs(p.Dst.Port()) || ours(p.Dst.Port()) && theirs(p.Src.Port()) {
			out = append(out, p)
		}
	}
	return out
}

// rtpFlows splits the captured RTP on the gateway's ports by direction, each
// in sequence-number order (RTP headers are in the clear under SRTP too).
func rtpFlows(pkts []cxcotest.UDPPacket, low int, baresip [2]int) (toGW, fromGW [][]byte) {
	ours := func(p uint16) bool { return int(p) >= low && int(p) < low+100 && p%2 == 0 }
	// Only packets between the gateway and this baresip: other tests' calls
	// on loopback may use ports in the gateway's range too (a plain PCMU
	// packet of theirs is 172 bytes, and was once taken for a plain packet
	// of this SRTP call).
	theirs := func(p uint16) bool { return int(p) >= baresip[0] && int(p) <= baresip[1] }
	for _, p := range pkts {
		if len(p.Payload) < 12 || p.Payload[0]>>6 != 2 {
			continue
		}
		switch {
		case ours(p.Dst.Port()) && theirs(p.Src.Port()):
			toGW = append(toGW, p.Payload)
		case ours(p.Src.Port()) && theirs(p.Dst.Port()):
			fromGW = append(fromGW, p.Payload)
		}
	}
	bySeq := func(a, b []byte) int {
		return int(int16(binary.BigEndian.Uint16(a[2:]) - binary.BigEndian.Uint16(b[2:])))
	}
	slices.SortStableFunc(toGW, bySeq)
	slices.SortStableFunc(fromGW, bySeq)
	return toGW, fromGW
}

// plainTone decodes a flow's payloads as if they were plain RTP of the codec
// and returns the 5 kHz tone's SNR in what comes out (-Inf if nothing does).
func plainTone(t *testing.T, codec string, flow [][]byte) float64 {
	var pcm []int16
	switch codec {
	case "G722":
		d := g722.NewDecoder()
		var out [320]int16
		for _, p := range flow {
			if len(p) < 12+160 {
				continue
			}
			d.Decode(out[:], p[12:12+160])
			pcm = append(pcm, out[:]...)
		}
	case "opus":
		d, err := opus.NewDecoder()
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for _, p := range flow {
			if x, err := d.Decode(p[12:], false, 0); err == nil {
				pcm = append(pcm, x...)
			}
		}
	}
	if len(pcm) < 16000 {
		return math.Inf(-1)
	}
	return audiotest.SNRDB(pcm[len(pcm)/4:], 16000, 5000)
}

// loudPart is a recording's audio from its first to its last loud 20 ms,
// less 200 ms at each end.
func loudPart(t *testing.T, x []int16, rate int) []int16 {
	t.Helper()
	lo, hi := audiotest.LoudSpan(x, rate/50, -40)
	if lo < 0 || hi-lo < rate {
		t.Fatalf("less than a second of audio in %.1f s recorded (loud %d..%d)", float64(len(x))/float64(max(rate, 1)), lo, hi)
	}
	return x[lo+rate/5 : hi-rate/5]
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestBaresipHDAgent: baresip calls a pcm_16000 agent over G.722, says a
// 5 kHz tone and stops; the provider simulator plays the utterance back, and
// baresip hears 5 kHz: the caller's audio reached the provider at 16 kHz and
// the provider's came back at 16 kHz, without an 8 kHz stage either way.
func TestBaresipHDAgent(t *testing.T) {
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--trunk-codecs", "G722,PCMU"}})
	tn := g.NewTenant("HD")
	g.AddNumber("+27211230016", "ZA", false)
	_, number := g.PublishAgent(tn, "Wideband", "ZA", map[string]any{"audio_format": "pcm_16000"})
	src := make([]int16, 48000*2) // 2 s of silence: the opening line
	src = append(src, audiotest.Sine(48000, 5000, -12, 1500*time.Millisecond)...)
	src = append(src, make([]int16, 48000*5)...)
	call := cxcotest.BaresipCall(t, cxcotest.BaresipCallOptions{Target: fmt.Sprintf("sip:%s@127.0.0.1:%d", number, g.SIPPort),
		Codec: "G722", Source: src, Seconds: 8})
	if call.HeardRate != 16000 {
		t.Fatalf("baresip decoded at %d Hz:\n%s", call.HeardRate, tail(call.Output, 30))
	}
	// The reply: the 20 ms frames after the caller's tone where 5 kHz stands out.
	frame := 320
	var reply []int16
	for i := 4 * 16000; i+frame <= len(call.Heard); i += frame {
		x := call.Heard[i : i+frame]
		if audiotest.ToneLevelDBFS(x, 16000, 5000) > -30 {
			reply = append(reply, x...)
		}
	}
	if len(reply) < 16000/2 {
		t.Fatalf("%.2f s of 5 kHz heard back, want the 1.5 s utterance", float64(len(reply))/16000)
	}
	f := audiotest.DominantFrequency(reply, 16000)
	t.Logf("heard back %.2f s at %.0f Hz, %.1f dBFS", float64(len(reply))/16000, f, audiotest.ToneLevelDBFS(reply, 16000, 5000))
	if math.Abs(f-5000) > 20 {
		t.Errorf("reply at %.0f Hz, want 5000", f)
	}
}
