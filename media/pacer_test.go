package media

import (
	"bytes"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/media/sdp"
	"github.com/pion/rtp"
)

// pacerRig is a started stream on a manual clock sending to a phone.
type pacerRig struct {
	s     *Stream
	m     interface{ Advance(time.Duration) }
	phone *phone
	got   []*rtp.Packet
}

func newPacerRig(t *testing.T, codec string, format Format, opts Options) *pacerRig {
	w, m := manualWheel(t)
	ph := newPhone(t)
	opts.Wheel = w
	s, err := NewStream(testPool(t), loopback, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(negotiated(codec, ph.addr()), Consumer{Format: format}); err != nil {
		t.Fatal(err)
	}
	r := &pacerRig{s: s, m: m, phone: ph}
	return r
}

// advance moves the clock and collects the packets sent meanwhile; the
// pacer sends synchronously inside Advance.
func (r *pacerRig) advance(t *testing.T, d time.Duration) []*rtp.Packet {
	r.m.Advance(d)
	var out []*rtp.Packet
	for {
		p, ok := r.phone.recv(50 * time.Millisecond)
		if !ok {
			break
		}
		out = append(out, p)
	}
	r.got = append(r.got, out...)
	return out
}

func isSilence(p []byte, b byte) bool { return bytes.Count(p, []byte{b}) == len(p) }

func tone(n int, freq float64) []byte {
	pcm := make([]int16, n)
	(&audiotest.Tone{Rate: 8000, Freq: freq, Amplitude: 0.3}).Fill(pcm)
	b := make([]byte, n)
	g711.PCMToULaw(b, pcm)
	return b
}

// checkContinuity verifies sequence numbers and timestamps step by one
// packet and 160 samples.
func checkContinuity(t *testing.T, pk []*rtp.Packet) {
	t.Helper()
	for i := 1; i < len(pk); i++ {
		if pk[i].SequenceNumber != pk[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: seq %d after %d", i, pk[i].SequenceNumber, pk[i-1].SequenceNumber)
		}
		if pk[i].Timestamp != pk[i-1].Timestamp+160 {
			t.Fatalf("packet %d: ts %d after %d", i, pk[i].Timestamp, pk[i-1].Timestamp)
		}
		if pk[i].SSRC != pk[0].SSRC {
			t.Fatalf("SSRC changed")
		}
	}
}

func TestPacerOnePacketPer20msSilenceWhenEmpty(t *testing.T) {
	tests := []struct {
		codec   string
		silence byte
		pt      uint8
	}{{"PCMU", g711.ULawSilence, 0}, {"PCMA", g711.ALawSilence, 8}}
	for _, tc := range tests {
		t.Run(tc.codec, func(t *testing.T) {
			defer leakCheck(t)()
			r := newPacerRig(t, tc.codec, FormatULaw8k, Options{})
			r.advance(t, 5*time.Millisecond) // the first tick
			for step := range 50 {
				got := r.advance(t, 20*time.Millisecond)
				if len(got) != 1 {
					t.Fatalf("step %d: %d packets in 20 ms, want 1", step, len(got))
				}
			}
			checkContinuity(t, r.got)
			for _, p := range r.got {
				if p.PayloadType != tc.pt || len(p.Payload) != 160 || !isSilence(p.Payload, tc.silence) || p.Marker {
					t.Fatalf("packet pt %d len %d marker %v, want silence", p.PayloadType, len(p.Payload), p.Marker)
				}
			}
			st := r.s.Stats()
			if st.PacketsSent != uint64(len(r.got)) || st.SilenceSent != st.PacketsSent {
				t.Fatalf("stats %+v", st)
			}
			r.s.Close()
		})
	}
}

func TestPacerTalkspurtMarkerAndImmediateStart(t *testing.T) {
	r := newPacerRig(t, "PCMU", FormatULaw8k, Options{})
	r.advance(t, 30*time.Millisecond) // a couple of silence packets, phase at 1 ms + k*20
	audio := tone(5*160+80, 1000)     // 105 ms: 5 frames and a half
	r.m.Advance(9 * time.Millisecond) // mid-interval
	n0 := len(r.got)
	if err := r.s.Play(audio); err != nil {
		t.Fatal(err)
	}
	// The first frame leaves on the next wheel tick, not at the pacer's phase.
	got := r.advance(t, time.Millisecond)
	if len(got) != 1 || !got[0].Marker || !bytes.Equal(got[0].Payload, audio[:160]) {
		t.Fatalf("after Play: %d packets (marker %v), want the first frame at once with the marker", len(got), len(got) > 0 && got[0].Marker)
	}
	r.advance(t, 200*time.Millisecond)
	pk := r.got[n0:]
	checkContinuity(t, r.got)
	for i := 1; i < 5; i++ {
		if pk[i].Marker || !bytes.Equal(pk[i].Payload, audio[i*160:(i+1)*160]) {
			t.Fatalf("frame %d: marker %v or wrong audio", i, pk[i].Marker)
		}
	}
	// The half frame is padded with silence once no more audio comes.
	if !bytes.Equal(pk[5].Payload[:80], audio[800:]) || !isSilence(pk[5].Payload[80:], g711.ULawSilence) {
		t.Fatal("partial frame not sent padded")
	}
	if !isSilence(pk[6].Payload, g711.ULawSilence) || pk[6].Marker {
		t.Fatal("no silence after the talkspurt")
	}
	// A second talkspurt gets the marker again.
	r.s.Play(audio[:160])
	got = r.advance(t, 21*time.Millisecond)
	if !got[0].Marker {
		t.Fatal("second talkspurt without marker")
	}
	checkContinuity(t, r.got)
	// Talkspurt re-phasing does not let the packet count run ahead of the
	// clock: over the whole run, one packet per 20 ms (+1 for the kick).
	r.advance(t, 2*time.Second)
	elapsed := 30*time.Millisecond + 9*time.Millisecond + 222*time.Millisecond + 2*time.Second
	if want := int(elapsed/(20*time.Millisecond)) + 1; len(r.got) < want-1 || len(r.got) > want+1 {
		t.Fatalf("%d packets in %v, want %d±1", len(r.got), elapsed, want)
	}
}

func TestFlushEmptiesWithinOneFrame(t *testing.T) {
	r := newPacerRig(t, "PCMA", FormatULaw8k, Options{})
	r.advance(t, 21*time.Millisecond)
	audio := tone(8000, 1000) // 1 s
	r.s.Play(audio)
	drained := r.s.Drained()
	r.advance(t, 40*time.Millisecond)
	n := r.s.Flush()
	if n < 45 || n > 48 {
		t.Fatalf("Flush dropped %d frames, want about 47", n)
	}
	select {
	case <-drained:
	default:
		t.Fatal("Drained not signalled by Flush")
	}
	got := r.advance(t, 20*time.Millisecond)
	if len(got) != 1 || !isSilence(got[0].Payload, g711.ALawSilence) {
		t.Fatal("the next packet after Flush is not silence")
	}
	if q := r.s.Queued(); q != 0 {
		t.Fatalf("queued %d after Flush", q)
	}
	if st := r.s.Stats(); st.Flushed != uint64(n) || st.Discarded != 0 {
		t.Fatalf("flushed %d discarded %d, want %d and 0", st.Flushed, st.Discarded, n)
	}
	// Discard drops the same way, counted apart from barge-in.
	r.s.Play(audio)
	d := r.s.Discard()
	if st := r.s.Stats(); d < 45 || st.Discarded != uint64(d) || st.Flushed != uint64(n) || st.Queued != 0 {
		t.Fatalf("discarded %d: stats discarded %d flushed %d queued %d", d, st.Discarded, st.Flushed, st.Queued)
	}
}

func TestDrainedAfterLastFrame(t *testing.T) {
	r := newPacerRig(t, "PCMU", FormatULaw8k, Options{})
	r.s.Play(tone(3*160, 500))
	d := r.s.Drained()
	r.advance(t, 41*time.Millisecond) // frames 1 and 2 (and 3 at 41 ms)
	select {
	case <-d:
	default:
		r.advance(t, 20*time.Millisecond)
		select {
		case <-d:
		default:
			t.Fatal("not drained after the last frame was sent")
		}
	}
	audioPackets := 0
	for _, p := range r.got {
		if !isSilence(p.Payload, g711.ULawSilence) {
			audioPackets++
		}
	}
	if audioPackets != 3 {
		t.Fatalf("%d audio packets, want 3", audioPackets)
	}
	select {
	case <-r.s.Drained():
	default:
		t.Fatal("Drained on an empty queue is not closed")
	}
}

func TestQueueBoundDropsOldest(t *testing.T) {
	r := newPacerRig(t, "PCMU", FormatULaw8k, Options{QueueMax: 100 * time.Millisecond})
	r.s.out.mu.Lock() // keep the pacer from sending while we queue
	r.s.out.talking = true
	r.s.out.mu.Unlock()
	audio := tone(10*160, 700)
	r.s.Play(audio)
	st := r.s.Stats()
	if st.Queued != 5 || st.QueueDropped != 5 {
		t.Fatalf("queued %d dropped %d, want 5 and 5", st.Queued, st.QueueDropped)
	}
	got := r.advance(t, 5*time.Millisecond)
	if len(got) != 1 || !bytes.Equal(got[0].Payload, audio[5*160:6*160]) {
		t.Fatal("oldest audio was not the one dropped")
	}
}

func TestHoldStopsSending(t *testing.T) {
	r := newPacerRig(t, "PCMU", FormatULaw8k, Options{})
	r.advance(t, 101*time.Millisecond)
	before := len(r.got)
	r.s.SetDirection(sdp.RecvOnly) // the far end went sendonly
	if got := r.advance(t, time.Second); len(got) != 0 {
		t.Fatalf("%d packets on hold", len(got))
	}
	if h := r.s.Stats().HoldTime; h != time.Second {
		t.Fatalf("hold time %v during the hold, want 1s", h)
	}
	r.s.SetDirection(sdp.SendRecv)
	got := r.advance(t, 100*time.Millisecond)
	if len(got) != 5 {
		t.Fatalf("%d packets after resume, want 5", len(got))
	}
	if h := r.s.Stats().HoldTime; h != time.Second {
		t.Fatalf("hold time %v after it, want 1s", h)
	}
	last := r.got[before-1]
	if got[0].SequenceNumber != last.SequenceNumber+1 {
		t.Fatal("sequence not continuous across hold")
	}
	if d := got[0].Timestamp - last.Timestamp; d != 51*160 {
		t.Fatalf("timestamp advanced %d across 1 s hold, want %d (the samples of the hold)", d, 51*160)
	}
}

func TestPCM16kPlayIsDownsampledAndEncoded(t *testing.T) {
	r := newPacerRig(t, "PCMA", FormatPCM16k, Options{})
	pcm := make([]int16, 16000)
	(&audiotest.Tone{Rate: 16000, Freq: 1000, Amplitude: 0.3}).Fill(pcm)
	// Bursty and odd-sized: 3 chunks of odd byte lengths.
	b := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		b[2*i] = byte(v)
		b[2*i+1] = byte(uint16(v) >> 8)
	}
	r.s.Play(b[:1001])
	r.s.Play(b[1001:20001])
	r.s.Play(b[20001:])
	r.advance(t, 1100*time.Millisecond)
	var out []int16
	for _, p := range r.got {
		if isSilence(p.Payload, g711.ALawSilence) {
			continue
		}
		x := make([]int16, 160)
		g711.ALawToPCM(x, p.Payload)
		out = append(out, x...)
	}
	if len(out) != 8000 {
		t.Fatalf("%d samples out, want 8000", len(out))
	}
	steady := out[800:7200]
	if f := audiotest.DominantFrequency(steady, 8000); f < 995 || f > 1005 {
		t.Fatalf("frequency %.1f Hz", f)
	}
	in := audiotest.ToneLevelDBFS(pcm, 16000, 1000)
	if l := audiotest.ToneLevelDBFS(steady, 8000, 1000); l < in-0.5 || l > in+0.5 {
		t.Fatalf("level %.2f dBFS, sent %.2f", l, in)
	}
	if r.s.OutboundChain() != "Play(pcm_16000) -> Frame(20ms) -> Resample(16000->8000) -> PCMA(encode) -> Queue -> Pacer -> RTP(PCMA)" {
		t.Fatalf("outbound chain %q", r.s.OutboundChain())
	}
}

// TestUnderrunsCounted: provider audio that runs out and resumes within a second
// is an underrun (the caller heard silence inside the speech), counted with the
// silence it cost; a pause over a second, or silence after a barge-in, is not.
func TestUnderrunsCounted(t *testing.T) {
	r := newPacerRig(t, "PCMU", FormatULaw8k, Options{})
	r.advance(t, 21*time.Millisecond)
	r.s.Play(tone(800, 440)) // 100 ms
	r.advance(t, 100*time.Millisecond)
	r.advance(t, 60*time.Millisecond) // three ticks of silence in the middle
	r.s.Play(tone(800, 440))
	r.advance(t, 100*time.Millisecond)
	if st := r.s.Stats(); st.Underruns != 1 || st.UnderrunTime < 40*time.Millisecond || st.UnderrunTime > 80*time.Millisecond {
		t.Fatalf("underruns %d, %v; want 1 of about 60ms", st.Underruns, st.UnderrunTime)
	}
	r.advance(t, 1500*time.Millisecond) // a pause between responses
	r.s.Play(tone(1600, 440))
	r.advance(t, 40*time.Millisecond)
	r.s.Flush() // barge-in, then the next response
	r.advance(t, 100*time.Millisecond)
	r.s.Play(tone(800, 440))
	r.advance(t, 100*time.Millisecond)
	if st := r.s.Stats(); st.Underruns != 1 {
		t.Fatalf("underruns %d after a long pause and a barge-in, want still 1", st.Underruns)
	}
}
