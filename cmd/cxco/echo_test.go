package main

import (
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
)

// toneRegion finds the part of received audio that carries the echoed tone (frames
// louder than -30 dBFS) and returns it without its first and last 200 ms.
func toneRegion(pcm []int16) []int16 {
	first, last := audiotest.LoudSpan(pcm, 160, -30)
	if first < 0 || last-first < 3200 {
		return nil
	}
	return pcm[first+1600 : last-1600]
}

// TestEchoLineTone: a 1 kHz tone sent into the echo line through 2 % loss, 5 %
// reordering, 1 % duplicates and 20 ms of jitter comes back at the same frequency
// and level — measured, through the gateway's whole media path.
func TestEchoLineTone(t *testing.T) {
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", "+15550001"}})
	for _, codec := range []string{"PCMU", "PCMA"} {
		t.Run(codec, func(t *testing.T) {
			ph, code := cxcotest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.SIPPort), "+15550001", codec)
			if code != 200 {
				t.Fatalf("echo line answered %d", code)
			}
			// RTP binds where SIP does (127.0.0.1), not on every address: the same
			// port on another loopback address is free.
			probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(ph.Remote.Port())})
			if err != nil {
				t.Fatalf("the call's RTP port is taken on 127.0.0.2 as well: the gateway bound it on every address (%v)", err)
			}
			probe.Close()
			ph.Impair = &cxcotest.Impairment{Seed: 7, Loss: 0.02, Reorder: 0.05, Duplicate: 0.01, Jitter: 20 * time.Millisecond}
			sent := cxcotest.Tone(1000, -10, 4*time.Second)
			ph.SendAudio(sent)
			ph.SendAudio(make([]int16, 8000*6/10)) // 600 ms of silence for the tail to come back
			ph.Hangup()
			got := toneRegion(ph.Audio())
			if got == nil {
				t.Fatalf("no echoed tone received (%d packets)", len(ph.Packets()))
			}
			freq := audiotest.DominantFrequency(got, 8000)
			wantLevel := audiotest.ToneLevelDBFS(sent[800:len(sent)-800], 8000, 1000)
			level := audiotest.ToneLevelDBFS(got, 8000, 1000)
			t.Logf("%s: echoed %.1f s, frequency %.1f Hz, level %.2f dBFS (sent %.2f dBFS), SNR %.1f dB",
				codec, float64(len(got))/8000, freq, level, wantLevel, audiotest.SNRDB(got, 8000, 1000))
			if math.Abs(freq-1000) > 5 {
				t.Errorf("frequency %.1f Hz, want 1000 ± 5", freq)
			}
			if math.Abs(level-wantLevel) > 1 {
				t.Errorf("level %.2f dBFS, want %.2f ± 1 dB", level, wantLevel)
			}
		})
	}
}

// TestINVITEFlood: one source flooding INVITEs is rate-limited and another source's
// call still goes through.
func TestINVITEFlood(t *testing.T) {
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{Args: []string{"--echo-number", "+15550001"}})
	gw := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: g.SIPPort}
	flood, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	var answers atomic.Int64
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := flood.ReadFromUDP(buf); err != nil {
				return
			}
			answers.Add(1)
		}
	}()
	const n = 4000
	stop := make(chan struct{})
	sentDone := make(chan struct{})
	go func() {
		defer close(sentDone)
		for i := 0; i < n; i++ {
			select {
			case <-stop:
				return
			default:
			}
			msg := fmt.Sprintf("INVITE sip:+15559990000@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKflood%d\r\n"+
				"From: <sip:flood@127.0.0.2>;tag=f%d\r\nTo: <sip:+15559990000@127.0.0.1>\r\nCall-ID: flood-%d\r\nCSeq: 1 INVITE\r\n"+
				"Contact: <sip:flood@%s>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", gw, flood.LocalAddr(), i, i, i, flood.LocalAddr())
			_, _ = flood.WriteToUDP([]byte(msg), gw)
		}
	}()
	// Meanwhile a call from another source.
	ph, code := cxcotest.Dial(t, gw.String(), "+15550001", "PCMU")
	if code != 200 {
		t.Fatalf("a call from another source during the flood: %d", code)
	}
	ph.SendAudio(cxcotest.Tone(700, -12, time.Second))
	ph.Hangup()
	close(stop)
	<-sentDone
	// Count once the gateway has worked through the flood (its counters stand
	// still), not after a guessed time: on a busy machine it is still reading its
	// socket buffer long after the last send.
	hc := keptAliveClient(t, g.HTTP)
	waitFloodCounted(t, hc, g.HTTP)
	// The limiter's own account: INVITEs over the source's budget dropped unanswered.
	dropped := metricValue(t, hc, g.HTTP, `cxco_sip_dropped_total{cause="flood"}`)
	if dropped == 0 {
		t.Fatal("the limiter dropped none of the flood")
	}
	got := answers.Load()
	t.Logf("flood: %d INVITEs from one source, %d answered (100 Trying and finals), at least %.0f dropped by the limiter; the other source's call went through with %d RTP packets back",
		n, got, dropped, len(ph.Packets()))
	if got >= 2*n {
		t.Fatalf("every flooded INVITE was answered (%d answers): no rate limit", got)
	}
	if len(ph.Packets()) < 25 {
		t.Fatalf("the other call got %d RTP packets back", len(ph.Packets()))
	}
}
