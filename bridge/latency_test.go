package bridge_test

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
)

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkUpstreamLatency: from an RTP packet's arrival to its audio leaving on the
// provider websocket, at the default jitter-buffer settings, with 0 and 20 ms of
// jitter injected between the phone and the gateway. Reported next to the jitter
// buffer's depth: the target is depth + 2 ms. beyond_depth is measured per chunk,
// from the jitter buffer's release of its last frame to the websocket write: what
// the gateway adds to the depth the buffer had at that moment.
//
//	go test -run '^$' -bench Latency -benchtime 1x ./bridge/
func BenchmarkUpstreamLatency(b *testing.B) {
	for _, jitter := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("jitter=%s", jitter), func(b *testing.B) {
			var mu sync.Mutex
			var lat, beyond []time.Duration
			for i := 0; i < b.N; i++ {
				r := newRig(b, rigOpts{opening: "Hi.", onUpstream: func(d, fromPlayout time.Duration) {
					mu.Lock()
					lat = append(lat, d)
					beyond = append(beyond, fromPlayout)
					mu.Unlock()
				}})
				r.connect("PCMU")
				<-r.call.Drained()
				var depths []time.Duration
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					tk := time.NewTicker(50 * time.Millisecond)
					defer tk.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tk.C:
							depths = append(depths, r.stream.Stats().JitterDepth)
						}
					}
				}()
				mu.Lock()
				lat, beyond = lat[:0], beyond[:0]
				mu.Unlock()
				r.phone.sendJittered(tone(500, -30, 5*time.Second), jitter, uint64(i+1))
				close(stop)
				wg.Wait()
				mu.Lock()
				got := slices.Clone(lat[min(len(lat), 25):]) // after the buffer settled
				add := slices.Clone(beyond[min(len(beyond), 25):])
				mu.Unlock()
				depth := pct(depths, 0.5)
				b.ReportMetric(ms(pct(got, 0.5)), "p50_ms")
				b.ReportMetric(ms(pct(got, 0.99)), "p99_ms")
				b.ReportMetric(ms(depth), "depth_ms")
				b.ReportMetric(ms(pct(add, 0.5)), "beyond_depth_p50_ms")
				b.ReportMetric(ms(pct(add, 0.99)), "beyond_depth_p99_ms")
				b.ReportMetric(float64(len(got)), "chunks")
				r.end("bench")
			}
		})
	}
}

// BenchmarkDownstreamLatency: from a provider `audio` message leaving the provider
// to the first RTP packet of that audio reaching the phone. Target: under 20 ms.
//
//	go test -run '^$' -bench Latency -benchtime 1x ./bridge/
func BenchmarkDownstreamLatency(b *testing.B) {
	for i := 0; i < b.N; i++ {
		sent := make(chan time.Time, 64)
		prov := scriptedProvider(b, func(c *websocket.Conn) {
			chunk := make([]byte, 1600) // 200 ms of 700 Hz
			pcm := tone(700, -10, 200*time.Millisecond)
			g711.PCMToULaw(chunk, pcm)
			b64 := base64.StdEncoding.EncodeToString(chunk)
			time.Sleep(500 * time.Millisecond)
			for id := 1; id <= 20; id++ {
				at := time.Now()
				msg := fmt.Sprintf(`{"type":"audio","audio_event":{"audio_base_64":%q,"event_id":%d}}`, b64, id)
				if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					return
				}
				sent <- at
				time.Sleep(400 * time.Millisecond)
			}
			close(sent)
			_, _, _ = c.ReadMessage()
		})
		r := newRig(b, rigOpts{providerURL: prov})
		r.connect("PCMU")
		var lat []time.Duration
		for at := range sent {
			deadline := time.Now().Add(300 * time.Millisecond)
			for time.Now().Before(deadline) {
				if p, ok := firstLoudAfter(r.phone, at); ok {
					lat = append(lat, p.Sub(at))
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		b.Logf("downstream latencies: %v", lat)
		b.ReportMetric(ms(pct(lat, 0.5)), "p50_ms")
		b.ReportMetric(ms(pct(lat, 0.99)), "p99_ms")
		b.ReportMetric(float64(len(lat)), "samples")
		r.end("bench")
	}
}

func firstLoudAfter(p *rtpPhone, t time.Time) (time.Time, bool) {
	for _, x := range p.packets() {
		if x.at.After(t) && audiotest.RMSDBFS(x.pcm) > -30 {
			return x.at, true
		}
	}
	return time.Time{}, false
}

// sendJittered plays pcm in real time (audiotest.Pace) with each packet delayed
// by up to jitter (packets may overtake each other, as on a real network).
func (p *rtpPhone) sendJittered(pcm []int16, jitter time.Duration, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 42))
	var wg sync.WaitGroup
	frame := make([]byte, 160)
	audiotest.Pace(len(pcm)/160, 20*time.Millisecond, func(n int) {
		off := n * 160
		g711.PCMToULaw(frame, pcm[off:off+160])
		pkt := p.packet(p.pt, off == 0, frame)
		p.ts += 160
		if jitter > 0 {
			wg.Add(1)
			time.AfterFunc(time.Duration(rnd.Int64N(int64(jitter))), func() { defer wg.Done(); _, _ = p.conn.WriteToUDP(pkt, p.to) })
		} else {
			_, _ = p.conn.WriteToUDP(pkt, p.to)
		}
	})
	wg.Wait()
}

// scriptedProvider is a provider websocket that answers the initiation with metadata
// (ulaw_8000 both ways), runs script, and keeps the socket until the gateway closes it.
func scriptedProvider(t testing.TB, script func(*websocket.Conn)) string {
	up := websocket.Upgrader{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/convai/conversation" {
			http.NotFound(w, r)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if _, _, err := c.ReadMessage(); err != nil { // conversation_initiation_client_data
			return
		}
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":{"conversation_id":"conv_scripted","agent_output_audio_format":"ulaw_8000","user_input_audio_format":"ulaw_8000"}}`))
		drained := make(chan struct{})
		go func() { // drain what the gateway sends
			defer close(drained)
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
		script(c)
		<-drained // the socket stays open until the gateway closes it
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}
