package bridge_test

import (
	"context"
	"errors"
	"math"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/store"
)

// browser is the far end of a test call: a pion peer connection on loopback that
// offers Opus and PCMU as a browser does, sends µ-law and keeps what it hears.
type browser struct {
	t     testing.TB
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	seq   uint16
	ts    uint32 // the microphone's first RTP timestamp

	mu        sync.Mutex
	heard     []heardFrame
	arrived   chan struct{} // closed (and replaced) when a packet is heard
	codec     string
	state     webrtc.PeerConnectionState
	connected chan struct{}
	once      sync.Once
	wg        sync.WaitGroup
	mic       chan micFrame // what the microphone sends next; silence when empty
	micStop   chan struct{}
}

// micFrame is 20 ms of audio for the microphone; done is closed once it is sent.
type micFrame struct {
	pcm  []int16
	done chan struct{}
}

type heardFrame struct {
	at  time.Time
	pcm []int16
}

func newBrowser(t testing.TB) *browser {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, pc: pc, seq: 100, ts: 1000, connected: make(chan struct{}), arrived: make(chan struct{})}
	b.track, _ = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "mic", "browser")
	if _, err := pc.AddTrack(b.track); err != nil {
		t.Fatal(err)
	}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		b.mu.Lock()
		b.state = s
		b.mu.Unlock()
		if s == webrtc.PeerConnectionStateConnected {
			b.once.Do(func() { close(b.connected) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		b.mu.Lock()
		b.codec = tr.Codec().MimeType
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				pcm := make([]int16, len(p.Payload))
				g711.ULawToPCM(pcm, p.Payload)
				b.mu.Lock()
				b.heard = append(b.heard, heardFrame{at: time.Now(), pcm: pcm})
				close(b.arrived)
				b.arrived = make(chan struct{})
				b.mu.Unlock()
			}
		}()
	})
	t.Cleanup(b.close)
	return b
}

// offer is the complete offer (ICE gathered).
func (b *browser) offer() string {
	b.t.Helper()
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(o); err != nil {
		b.t.Fatal(err)
	}
	<-g
	return b.pc.LocalDescription().SDP
}

func (b *browser) answer(sdp string) {
	b.t.Helper()
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		b.t.Fatal(err)
	}
}

// startMic opens the microphone: from now on a packet goes out every 20 ms,
// carrying what send queued or else silence, with the RTP timestamp of when its
// audio was captured, as a browser's. The capture clock is the wall clock (a
// sound card's does not stop when the sender is not scheduled): after a stall
// every frame that fell due goes out at once, on its own timestamp. A
// time.Ticker alone drops the ticks a slow receiver misses, so on a loaded
// machine the timestamps fell behind real time (to 40% of it), and the
// gateway's jitter buffer rightly played none of that late audio.
func (b *browser) startMic() {
	b.mic, b.micStop = make(chan micFrame, 1000), make(chan struct{})
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		const frame = 20 * time.Millisecond
		tick := time.NewTicker(frame)
		defer tick.Stop()
		payload := make([]byte, 160)
		start, sent := time.Now(), 0
		for {
			for due := int(time.Since(start)/frame) + 1; sent < due; sent++ {
				var f micFrame
				select {
				case f = <-b.mic:
				default:
				}
				for i := range payload {
					var v int16
					if i < len(f.pcm) {
						v = f.pcm[i]
					}
					payload[i] = g711.EncodeULaw(v)
				}
				_ = b.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: b.seq,
					Timestamp: b.ts + uint32(sent)*160, Marker: sent == 0}, Payload: payload})
				b.seq++
				if f.done != nil {
					close(f.done)
				}
			}
			select {
			case <-tick.C:
			case <-b.micStop:
				return
			}
		}
	}()
}

// send says pcm (8 kHz) into the open microphone and returns once it is sent.
func (b *browser) send(pcm []int16) {
	var last chan struct{}
	for off := 0; off < len(pcm); off += 160 {
		f := micFrame{pcm: pcm[off:min(off+160, len(pcm))]}
		if off+160 >= len(pcm) {
			last = make(chan struct{})
			f.done = last
		}
		b.mic <- f
	}
	if last != nil {
		<-last
	}
}

// wait waits until cond holds, checking it as each packet is heard, or fails the
// test after d.
func (b *browser) wait(what string, d time.Duration, cond func() bool) {
	b.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		next := b.arrived
		b.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-next:
		case <-deadline.C:
			if !cond() {
				b.t.Fatalf("timed out waiting for %s", what)
			}
			return
		}
	}
}

func (b *browser) heardSince(t time.Time) []int16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []int16
	for _, f := range b.heard {
		if !f.at.Before(t) {
			out = append(out, f.pcm...)
		}
	}
	return out
}

func (b *browser) close() {
	if b.micStop != nil {
		select {
		case <-b.micStop:
		default:
			close(b.micStop)
		}
	}
	_ = b.pc.Close()
	b.wg.Wait()
}

// webrtcCallsLeft lists goroutines of test calls or of pion still running.
func webrtcCallsLeft() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "bridge.(*webrtcCall)") || strings.Contains(g, "pion/ice") || strings.Contains(g, "pion/webrtc") ||
			strings.Contains(g, "pion/dtls") || strings.Contains(g, "pion/srtp") || strings.Contains(g, "bridge.(*Session)") {
			left = append(left, g)
		}
	}
	return strings.Join(left, "\n\n")
}

func checkNoCallGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := webrtcCallsLeft()
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after the call:\n%s", left)
		}
		time.Sleep(20 * time.Millisecond) // polling exits, not synchronising
	}
}

func newTestCalls(t *testing.T, r *rig, o bridge.TestCallOptions) *bridge.TestCalls {
	t.Helper()
	o.Connector, o.Calls, o.Wheel, o.Logger = r.conn, r.calls, r.wheel, r.log
	o.PublicIP = netip.MustParseAddr("127.0.0.1")
	tc, err := bridge.NewTestCalls(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	return tc
}

// TestWebRTCTestCall: a browser offers Opus and PCMU; the call settles on PCMU,
// the browser hears the opening line (the simulator's 440 Hz), says something
// (1 kHz) and hears it back, and hangs up through EndTestCall; the conversation is
// a completed voice call from "webrtc" with its transcript, RTP statistics and
// usage, and nothing of the call keeps running.
func TestWebRTCTestCall(t *testing.T) {
	r := newRig(t, rigOpts{opening: "Hello from the browser test."})
	tc := newTestCalls(t, r, bridge.TestCallOptions{})
	ctx := context.Background()
	b := newBrowser(t)
	id, answer, err := tc.StartTestCall(ctx, r.co, r.agent, b.offer())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer, "PCMU/8000") || strings.Contains(answer, "opus") || !strings.Contains(answer, "a=candidate:") ||
		!strings.Contains(answer, "127.0.0.1") {
		t.Fatalf("answer:\n%s", answer)
	}
	b.answer(answer)
	select {
	case <-b.connected:
	case <-time.After(10 * time.Second):
		t.Fatal("the browser did not connect")
	}
	b.startMic() // silence while the opening line plays, as an open browser microphone sends
	start := time.Now()
	b.wait("the opening line", 8*time.Second, func() bool { return len(loud(b.heardSince(start))) >= 4000 })
	if f := audiotest.DominantFrequency(loud(b.heardSince(start))[:4000], 8000); math.Abs(f-440) > 5 {
		t.Fatalf("opening line at %.1f Hz, want the simulator's 440 Hz", f)
	}
	b.mu.Lock()
	codec := b.codec
	b.mu.Unlock()
	if codec != webrtc.MimeTypePCMU {
		t.Fatalf("the browser receives %s, want PCMU", codec)
	}
	b.wait("the opening line to end", 8*time.Second, func() bool {
		return len(loud(b.heardSince(time.Now().Add(-300*time.Millisecond)))) == 0
	})
	spoke := time.Now()
	b.send(tone(1000, -10, time.Second))
	b.wait("the echoed utterance", 10*time.Second, func() bool { return len(loud(b.heardSince(spoke))) >= 4000 })
	if f := audiotest.DominantFrequency(loud(b.heardSince(spoke)), 8000); math.Abs(f-1000) > 5 {
		t.Fatalf("echoed utterance at %.1f Hz, want 1000", f)
	}

	if err := tc.EndTestCall(ctx, r.co.ID+1, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another company hangs up: %v, want not found", err)
	}
	// Redis stops answering (SIGSTOP) and the browser says something more, so its
	// transcript entries wait for Redis when the call ends: the end is written only
	// after the transcript's flush has given them its 3 s and the spool has taken
	// over. The call is still billed to the hang-up, not to that wait.
	sp := store.NewSpool(r.st, store.SpoolOptions{Logger: r.log})
	r.st.SetSpool(sp)
	t.Cleanup(func() { sp.Close(time.Second) })
	if err := syscall.Kill(r.red.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := true
	resume := func() {
		if paused {
			paused = false
			if err := syscall.Kill(r.red.Pid(), syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume)
	spoke = time.Now()
	b.send(tone(1000, -10, time.Second))
	b.wait("the echo with Redis paused", 10*time.Second, func() bool { return len(loud(b.heardSince(spoke))) >= 4000 })
	hungUp := time.Now()
	if err := tc.EndTestCall(ctx, r.co.ID, id); err != nil {
		t.Fatal(err)
	}
	recordedAfter := time.Since(hungUp)
	resume()
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := sp.Flush(fctx); err != nil {
		t.Fatalf("the spool did not empty once Redis was back: %v", err)
	}
	if err := tc.EndTestCall(ctx, r.co.ID, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second hang-up: %v, want not found", err)
	}
	d, err := r.st.GetConversationDetail(ctx, r.co.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	cv := d.Conversation
	if cv.Channel != "voice" || cv.Direction != "inbound" || cv.CallerNumber == nil || *cv.CallerNumber != bridge.CallerWebRTC ||
		cv.Status != store.ConvCompleted || cv.EndReason == nil || *cv.EndReason != string(callpath.CallerHangup) || cv.AnsweredAt == nil ||
		cv.DurationSeconds == nil || cv.EndedAt == nil {
		t.Fatalf("conversation: %+v", cv)
	}
	// Billed to the hang-up: ended_at is the hang-up's second (times are stored
	// to the second), while the end was written recordedAfter later.
	if recordedAfter < 2*time.Second {
		t.Fatalf("recorded %s after the hang-up: the end did not wait on the store, so this proves nothing", recordedAfter)
	}
	if cv.EndedAt.After(hungUp) || cv.EndedAt.Before(hungUp.Add(-time.Second)) ||
		math.Abs(float64(*cv.DurationSeconds)-hungUp.Sub(*cv.AnsweredAt).Seconds()) > 1 {
		t.Fatalf("hung up at %s, recorded %s later: ended_at %s, %d s from the answer at %s", hungUp.UTC().Format(time.RFC3339Nano),
			recordedAfter.Round(time.Millisecond), cv.EndedAt.Format(time.RFC3339), *cv.DurationSeconds, cv.AnsweredAt.Format(time.RFC3339))
	}
	t.Logf("hung up with Redis paused; recorded %s later; billed %d s, ended_at %s for a hang-up at %s",
		recordedAfter.Round(time.Millisecond), *cv.DurationSeconds, cv.EndedAt.Format(time.RFC3339), hungUp.UTC().Format(time.RFC3339Nano))
	rtpStats, _ := cv.Metadata["rtp"].(map[string]any)
	if n, _ := rtpStats["packets_received"].(float64); n < 50 {
		t.Fatalf("metadata_.rtp: %v", cv.Metadata)
	}
	if len(d.Transcript) < 3 || d.Transcript[0].Role != "agent" || d.Transcript[0].Message != "Hello from the browser test." {
		t.Fatalf("transcript: %+v", d.Transcript)
	}
	var user bool
	for _, e := range d.Transcript {
		user = user || e.Role == "user"
	}
	if !user {
		t.Fatalf("no user entry: %+v", d.Transcript)
	}
	day := time.Now().UTC()
	u, err := r.st.UsageRange(ctx, r.co.ID, day, day, r.agent.ID)
	if err != nil {
		t.Fatal(err)
	}
	if u.Total.VoiceConversations != 1 {
		t.Fatalf("usage: %+v", u.Total)
	}
	if tc.Calls() != 0 {
		t.Fatalf("%d calls left", tc.Calls())
	}
	b.close()
	checkNoCallGoroutines(t)
}

// TestWebRTCEnds: every other way a test call ends is recorded with its reason.
func TestWebRTCEnds(t *testing.T) {
	tests := []struct {
		name    string
		opts    bridge.TestCallOptions
		connect bool
		end     func(tc *bridge.TestCalls, b *browser)
		reason  string
		status  string
	}{
		{name: "browser never connects", opts: bridge.TestCallOptions{ConnectTimeout: 500 * time.Millisecond},
			end: func(*bridge.TestCalls, *browser) {}, reason: string(callpath.ICETimeout), status: store.ConvFailed},
		{name: "browser closes its peer connection", connect: true,
			end: func(_ *bridge.TestCalls, b *browser) { b.close() }, reason: "", status: store.ConvCompleted},
		{name: "no RTP from the browser", connect: true, opts: bridge.TestCallOptions{RTPTimeout: time.Second},
			end: func(*bridge.TestCalls, *browser) {}, reason: string(callpath.RTPTimeout), status: store.ConvCompleted},
		{name: "shutdown", connect: true,
			end: func(tc *bridge.TestCalls, _ *browser) { tc.Close() }, reason: string(callpath.Shutdown), status: store.ConvCompleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigOpts{})
			recorded := make(chan int64, 1)
			tt.opts.OnRecorded = func(id int64) { recorded <- id }
			tc := newTestCalls(t, r, tt.opts)
			b := newBrowser(t)
			ctx := context.Background()
			id, answer, err := tc.StartTestCall(ctx, r.co, r.agent, b.offer())
			if err != nil {
				t.Fatal(err)
			}
			if tt.connect {
				b.answer(answer)
				select {
				case <-b.connected:
				case <-time.After(10 * time.Second):
					t.Fatal("the browser did not connect")
				}
				// Our side is connected too once its pacer's packets arrive.
				b.wait("our media", 5*time.Second, func() bool { return len(b.heardSince(time.Time{})) > 0 })
			}
			tt.end(tc, b)
			select {
			case got := <-recorded:
				if got != id {
					t.Fatalf("call %d ended, want %d", got, id)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the call did not end")
			}
			cv, err := r.st.GetConversation(ctx, r.co.ID, id)
			if err != nil {
				t.Fatal(err)
			}
			if cv.Status != tt.status || cv.EndReason == nil {
				t.Fatalf("conversation %s, reason %v; want %s", cv.Status, cv.EndReason, tt.status)
			}
			if tt.reason != "" && *cv.EndReason != tt.reason {
				t.Fatalf("end reason %q, want %q", *cv.EndReason, tt.reason)
			}
			if tt.reason == "" && !strings.HasPrefix(*cv.EndReason, "ice_") && *cv.EndReason != string(callpath.CallerHangup) {
				t.Fatalf("end reason %q, want the browser's hang-up or ICE losing it", *cv.EndReason)
			}
			if (cv.AnsweredAt != nil) != tt.connect {
				t.Fatalf("answered_at %v, connected %v", cv.AnsweredAt, tt.connect)
			}
			if n := tc.Calls(); n != 0 {
				t.Fatalf("%d calls left once the call was recorded", n)
			}
			tc.Close()
			b.close()
			checkNoCallGoroutines(t)
		})
	}
}

// TestWebRTCRefusals: offers a test call cannot answer are 422 without a
// conversation; a provider that refuses is 503 with the conversation failed.
func TestWebRTCRefusals(t *testing.T) {
	r := newRig(t, rigOpts{})
	tc := newTestCalls(t, r, bridge.TestCallOptions{})
	ctx := context.Background()
	opusOnly := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
	for _, tt := range []struct{ name, offer string }{
		{"empty", ""},
		{"not SDP", "hello"},
		{"no PCMU", opusOnly},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tc.StartTestCall(ctx, r.co, r.agent, tt.offer)
			var te *bridge.TestCallError
			if !errors.Is(err, bridge.ErrBadOffer) || !errors.As(err, &te) || te.HTTPStatus() != 422 {
				t.Fatalf("err %v, want a 422 bad offer", err)
			}
		})
	}
	before, _ := r.st.ListConversations(ctx, r.co.ID, 0, "", 0, 100)
	r.sim.SetRefuse(true)
	b := newBrowser(t)
	_, _, err := tc.StartTestCall(ctx, r.co, r.agent, b.offer())
	var te *bridge.TestCallError
	if !errors.As(err, &te) || te.HTTPStatus() != 503 {
		t.Fatalf("provider refusing: %v, want 503", err)
	}
	after, _ := r.st.ListConversations(ctx, r.co.ID, 0, "", 0, 100)
	if len(after.Items) != len(before.Items)+1 || after.Items[0].Status != store.ConvFailed {
		t.Fatalf("conversations: %d before, %d after, newest %+v", len(before.Items), len(after.Items), after.Items[0])
	}
	b.close()
	checkNoCallGoroutines(t)
}
