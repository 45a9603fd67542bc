package elevenlabssim

import (
	"github.com/cxco/gateway/bridge/internal/simaudio"

	"encoding/base64"
	"encoding/json"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// audioMessages are 20 ms user_audio_chunk messages: 1 s of tone, then 1 s of
// silence, so utterances come and go.
func audioMessages(f format) [][]byte {
	var msgs [][]byte
	pcm := concat(tone(f.Rate, 1000, time.Second), silence(f.Rate, time.Second))
	n := f.Samples(20 * time.Millisecond)
	for i := 0; i+n <= len(pcm); i += n {
		msgs = append(msgs, []byte(`{"user_audio_chunk":"`+base64.StdEncoding.EncodeToString(f.Encode(pcm[i:i+n]))+`"}`))
	}
	return msgs
}

// benchReader is a read side with no socket; its commands are counted and dropped.
func benchReader(f format) (*reader, chan cmd) {
	c := &wsConn{s: New(Options{}), set: settings{in: f, out: f}, cmds: make(chan cmd, 1<<16),
		initc: make(chan initResult, 1), loopDone: make(chan struct{}), stop: make(chan struct{})}
	rd := newReader(c)
	rd.first = false
	return rd, c.cmds
}

// TestAudioPathAllocs: a user_audio_chunk that ends no utterance costs no
// allocation.
func TestAudioPathAllocs(t *testing.T) {
	for _, f := range []format{ulaw8000, simaudio.PCM(16000)} {
		t.Run(f.Name, func(t *testing.T) {
			msgs := audioMessages(f)
			rd, cmds := benchReader(f)
			for _, m := range msgs { // warm up: buffers reach their size
				if err := rd.handle(m); err != nil {
					t.Fatal(err)
				}
			}
			for range len(cmds) {
				<-cmds
			}
			i := 0
			allocs := testing.AllocsPerRun(40, func() { // tone, then silence short of the utterance's end
				if err := rd.handle(msgs[i%len(msgs)]); err != nil {
					t.Fatal(err)
				}
				i++
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations per chunk, want 0", allocs)
			}
		})
	}
}

// BenchmarkUserAudioChunk is the read side's cost per 20 ms user_audio_chunk:
// JSON fast path, base64, decoding and the energy detector (an utterance, and
// its echo, every 50 chunks).
func BenchmarkUserAudioChunk(b *testing.B) {
	for _, f := range []format{ulaw8000, simaudio.PCM(16000)} {
		b.Run(f.Name, func(b *testing.B) {
			msgs := audioMessages(f)
			rd, cmds := benchReader(f)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := rd.handle(msgs[i%len(msgs)]); err != nil {
					b.Fatal(err)
				}
				for len(cmds) > 0 {
					<-cmds
				}
			}
			b.ReportMetric(100*float64(b.Elapsed().Nanoseconds())/float64(b.N)/20e6, "core-%/conv")
		})
	}
}

// BenchmarkConversations runs N real-time conversations against the simulator
// from a caller farm in a separate process (the test binary re-run as
// TestCallerFarmHelper), for b.N seconds, and reports the simulator's CPU per
// conversation-second (the farm's CPU not counted), its allocations per caller
// audio chunk, its peak memory (heap and stacks in use) per conversation, and how quickly the farm's utterances were answered. Run with
// e.g. -benchtime=20x (20 s); CXCO_BENCH_CONVERSATIONS changes N (default 500).
func BenchmarkConversations(b *testing.B) {
	n := 500
	if v, err := strconv.Atoi(os.Getenv("CXCO_BENCH_CONVERSATIONS")); err == nil && v > 0 {
		n = v
	}
	sim := New(Options{})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	defer sim.Close()
	sim.mu.Lock()
	a := &Agent{ID: "agent_bench", Config: agentBody("Hello, this is the load test agent.", "ulaw_8000")["conversation_config"].(map[string]any)}
	sim.agents[a.ID] = a
	sim.mu.Unlock()
	secs := max(b.N, 1)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCallerFarmHelper$", "-test.v=false")
	cmd.Env = append(os.Environ(), "CXCO_CALLER_FARM=1", "CXCO_FARM_URL=ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/convai/conversation?agent_id="+a.ID,
		"CXCO_FARM_CONVERSATIONS="+strconv.Itoa(n), "CXCO_FARM_SECONDS="+strconv.Itoa(secs))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	base := m0.HeapInuse + m0.StackInuse
	var peak uint64
	sampled := make(chan struct{})
	done := make(chan struct{})
	go func() { // the simulator's memory, twice a second
		defer close(sampled)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse+m.StackInuse)
			}
		}
	}()
	b.ResetTimer()
	cpu0 := rusage(syscall.RUSAGE_SELF)
	err := cmd.Run()
	cpu := rusage(syscall.RUSAGE_SELF) - cpu0
	b.StopTimer()
	close(done)
	<-sampled
	if err != nil {
		b.Fatalf("caller farm: %v\n%s", err, out.String())
	}
	runtime.ReadMemStats(&m1)
	var res farmResult
	line := out.String()
	if i := strings.Index(line, "{"); i >= 0 {
		line = line[i:]
	}
	if err := json.NewDecoder(strings.NewReader(line)).Decode(&res); err != nil {
		b.Fatalf("caller farm output %q: %v", out.String(), err)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n*secs), "cpu-ns/conv-s")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(max(res.Chunks, 1)), "allocs/chunk")
	b.ReportMetric(float64(peak-min(peak, base))/float64(n), "B/conv")
	b.ReportMetric(float64(res.AnswerP50.Microseconds())/1000, "answer-p50-ms")
	b.ReportMetric(float64(res.AnswerP99.Microseconds())/1000, "answer-p99-ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d conversations x %d s: simulator cpu %v (%.0f%% of one core), farm: %d connected, %d chunks sent, %d answers, %d interruptions, %d pings, %d errors; load %s",
		n, secs, cpu, 100*cpu.Seconds()/float64(secs), res.Connected, res.Chunks, res.Answers, res.Interruptions, res.Pings, res.Errors, loadavg())
	if res.Connected != n || res.Errors > 0 {
		b.Errorf("%d of %d conversations connected, %d errors", res.Connected, n, res.Errors)
	}
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

type farmResult struct {
	Connected, Chunks, Answers, Interruptions, Pings, Errors int
	AnswerP50, AnswerP99                                     time.Duration
}

// TestCallerFarmHelper is the caller farm of BenchmarkConversations: each
// conversation streams 20 ms µ-law chunks in real time (1.5 s of tone, 1 s of
// silence, over and over), answers pings, and times each answer from the chunk
// that completed the utterance's 500 ms of silence to its user_transcript.
func TestCallerFarmHelper(t *testing.T) {
	if os.Getenv("CXCO_CALLER_FARM") == "" {
		t.Skip("helper process for BenchmarkConversations")
	}
	url := os.Getenv("CXCO_FARM_URL")
	n, _ := strconv.Atoi(os.Getenv("CXCO_FARM_CONVERSATIONS"))
	secs, _ := strconv.Atoi(os.Getenv("CXCO_FARM_SECONDS"))
	pcm := concat(tone(8000, 1000, 1500*time.Millisecond), silence(8000, time.Second))
	var chunks [][]byte
	for i := 0; i+160 <= len(pcm); i += 160 {
		chunks = append(chunks, []byte(`{"user_audio_chunk":"`+base64.StdEncoding.EncodeToString(ulaw8000.Encode(pcm[i:i+160]))+`"}`))
	}
	endAt := (1500 + 500) / 20 // the chunk index that ends an utterance
	var (
		mu      sync.Mutex
		res     farmResult
		answers []time.Duration
		wg      sync.WaitGroup
	)
	stop := time.Now().Add(time.Duration(secs) * time.Second)
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, Subprotocols: []string{"convai"}}
	for range n {
		ws, _, err := d.Dial(url, nil)
		if err != nil {
			mu.Lock()
			res.Errors++
			mu.Unlock()
			continue
		}
		var wmu sync.Mutex // one writer at a time: the pacer and the pong
		write := func(b []byte) error {
			wmu.Lock()
			defer wmu.Unlock()
			_ = ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
			return ws.WriteMessage(websocket.TextMessage, b)
		}
		var ended atomic.Int64 // unix ns when the last utterance ended
		wg.Add(2)
		go func() { // reader
			defer wg.Done()
			for {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					return
				}
				var ev event
				if json.Unmarshal(msg, &ev) != nil {
					continue
				}
				mu.Lock()
				switch ev.Type {
				case "conversation_initiation_metadata":
					res.Connected++
				case "user_transcript":
					res.Answers++
					if e := ended.Load(); e != 0 {
						answers = append(answers, time.Since(time.Unix(0, e)))
					}
				case "interruption":
					res.Interruptions++
				case "ping":
					res.Pings++
				}
				mu.Unlock()
				if ev.Type == "ping" {
					_ = write([]byte(`{"type":"pong","event_id":` + strconv.FormatInt(ev.Ping.EventID, 10) + `}`))
				}
			}
		}()
		go func() { // pacer
			defer wg.Done()
			defer ws.Close()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; time.Now().Before(stop); i++ {
				<-tick.C
				if i%len(chunks) == endAt-1 { // before the write: the answer may come back at once
					ended.Store(time.Now().UnixNano())
				}
				if err := write(chunks[i%len(chunks)]); err != nil {
					mu.Lock()
					res.Errors++
					mu.Unlock()
					return
				}
				mu.Lock()
				res.Chunks++
				mu.Unlock()
			}
			wmu.Lock()
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			wmu.Unlock()
		}()
	}
	wg.Wait()
	res.AnswerP50, res.AnswerP99 = percentile(answers, 0.5), percentile(answers, 0.99)
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)]
}
