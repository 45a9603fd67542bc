package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// summary is everything the run measured.
type summary struct {
	// UpPlayout and UpArrival: caller audio to the provider websocket, from the
	// jitter buffer's release and from the RTP arrival (the gateway's histogram).
	UpPlayout, UpArrival hist
	Config               string
	Machine              string
	LoadAtStart          string
	Load                 string // load average at the end
	WorkDir              string

	// SIPp
	Attempted, Answered, Failed  int
	FailedBy                     map[string]int // SIPp's failure columns, by codec
	SIPpExit                     map[string]int
	Retransmissions              int
	SetupP50, SetupP99, SetupMax float64 // INVITE -> 200, ms (SIPp rtd)
	SetupSamples                 int

	// The gateway's own records
	Records       map[string]int // conversations by status / end reason
	Rejections    map[string]int // SIP rejections by status (metrics)
	RecRTPIn      int64          // RTP packets the gateway received (its records)
	RecRTPOut     int64
	RecLost       int64 // RFC 3550 cumulative lost, summed
	RecLate       int64 // packets the jitter buffer dropped as late
	RecConcealed  int64
	RecUnderruns  int64   // times the outbound queue ran dry inside the agent's speech
	RecUnderrunMS float64 // the silence that cost the callers
	RecMOS        []float64
	RecExpected   int64
	ProviderConns float64 // provider sessions opened

	// Steady window (every call up)
	WindowSeconds     float64
	WindowCalls       float64 // mean calls up
	CPUSeconds        float64
	OthersCPUSeconds  float64 // SIPp, simulator, Redis, dumpcap
	CPUmsPerCallSec   float64
	IdleRSS, RSS      int64
	RSSPerCallKiB     float64
	MsgInPerSec       float64
	MsgOutPerSec      float64
	Goroutines        float64
	GoroutinesPerCall float64
	// Go's heap (allocated: live and not yet collected) and goroutine stacks,
	// beyond idle, per call: what of RSSPerCallKiB the Go runtime accounts for
	HeapPerCallKiB, StacksPerCallKiB float64
	Threads                          int
	LoadInWindow                     string

	// API probe in the window
	APIRequests int
	APIErrors   int
	APICodes    map[int]int
	APIP50      float64
	APIP99      float64

	Capture  *captureSummary
	Profiles string

	rtd []float64
}

type captureSummary struct {
	Up, Down rtpLeg
	Dropped  string
}

func (c *config) describe() string {
	d := fmt.Sprintf("-calls %d -rate %g -concurrency %d -hold %s -pcma %g -format %s -store %s -agents %d -api-rate %g -provider %s",
		c.calls, c.rate, c.concurrency, c.hold, c.pcma, c.format, c.store, c.agents, c.apiRate, c.provider)
	if c.echo {
		d += " -echo"
	}
	return d
}

func (s *summary) addSIPp(codec string, st *sippStats, exit int) {
	if s.FailedBy == nil {
		s.FailedBy, s.SIPpExit = map[string]int{}, map[string]int{}
	}
	s.SIPpExit[codec] = exit
	if st == nil {
		return
	}
	s.Attempted += st.Created
	s.Answered += st.Successful
	s.Failed += st.Failed
	s.Retransmissions += st.Retransmissions
	for k, v := range st.FailedBy {
		s.FailedBy[codec+" "+k] += v
	}
	all := append(s.rtd, st.RTDms...)
	s.rtd = all
	s.SetupSamples = len(all)
	s.SetupP50 = percentile(append([]float64(nil), all...), 0.5)
	s.SetupP99 = percentile(append([]float64(nil), all...), 0.99)
	s.SetupMax = percentile(append([]float64(nil), all...), 1)
}

// addSamples finds the steady window (calls up at the target since settle) and
// measures CPU, memory, goroutines and provider messages over it.
func (s *summary) addSamples(ss []sample, idle []int64, m0 metrics, threshold float64) {
	if len(idle) > 0 {
		v := make([]float64, len(idle))
		for i, r := range idle {
			v[i] = float64(r)
		}
		s.IdleRSS = int64(median(v))
	}
	first, last := -1, -1
	for i, x := range ss {
		if x.active >= threshold {
			if first < 0 {
				first = i
			}
			last = i
		} else if first >= 0 {
			break
		}
	}
	if first < 0 {
		return
	}
	// Skip the settle time after the last call came up.
	start := first
	for start < last && ss[start].at.Sub(ss[first].at) < 3*time.Second {
		start++
	}
	end := last
	if end-start < 2 {
		start = first
	}
	if end <= start {
		return
	}
	a, b := ss[start], ss[end]
	s.WindowSeconds = b.at.Sub(a.at).Seconds()
	callSec, n := 0.0, 0.0
	var rss, gor, heap, stacks []float64
	for i := start + 1; i <= end; i++ {
		dt := ss[i].at.Sub(ss[i-1].at).Seconds()
		callSec += (ss[i].active + ss[i-1].active) / 2 * dt
		n += dt
	}
	for i := start; i <= end; i++ {
		rss = append(rss, float64(ss[i].rss))
		gor = append(gor, ss[i].goroutines)
		heap, stacks = append(heap, ss[i].heap), append(stacks, ss[i].stacks)
		s.Threads = max(s.Threads, ss[i].threads)
	}
	s.WindowCalls = callSec / n
	s.CPUSeconds = (b.cpu - a.cpu).Seconds()
	s.OthersCPUSeconds = (b.others - a.others).Seconds()
	s.CPUmsPerCallSec = 1000 * s.CPUSeconds / callSec
	s.RSS = int64(median(rss))
	s.RSSPerCallKiB = float64(s.RSS-s.IdleRSS) / s.WindowCalls / 1024
	s.MsgInPerSec = (b.msgIn - a.msgIn) / s.WindowSeconds
	s.MsgOutPerSec = (b.msgOut - a.msgOut) / s.WindowSeconds
	s.Goroutines = median(gor)
	s.GoroutinesPerCall = (s.Goroutines - m0["go_goroutines"]) / s.WindowCalls
	s.HeapPerCallKiB = (median(heap) - m0["go_memstats_heap_alloc_bytes"]) / s.WindowCalls / 1024
	s.StacksPerCallKiB = (median(stacks) - m0["go_memstats_stack_inuse_bytes"]) / s.WindowCalls / 1024
}

func (s *summary) addMetrics(m0, m1 metrics) {
	s.Rejections = map[string]int{}
	for k, v := range m1.labelled("cxco_sip_rejections_total", "status") {
		if d := int(v - m0.labelled("cxco_sip_rejections_total", "status")[k]); d > 0 {
			s.Rejections[k] = d
		}
	}
	s.ProviderConns = m1.sum("cxco_provider_sessions_total", "") - m0.sum("cxco_provider_sessions_total", "")
	s.UpPlayout = histDelta(m0, m1, "cxco_provider_upstream_seconds", `from="playout"`)
	s.UpArrival = histDelta(m0, m1, "cxco_provider_upstream_seconds", `from="arrival"`)
}

// hist is a histogram's counts over a window: bucket upper bounds (s) and the
// cumulative counts at each.
type hist struct {
	Bounds []float64
	Counts []float64
}

// histDelta is the histogram name{sel} between two scrapes.
func histDelta(m0, m1 metrics, name, sel string) hist {
	var h hist
	for k, v := range m1 {
		if !strings.HasPrefix(k, name+"_bucket{") || !strings.Contains(k, sel) {
			continue
		}
		i := strings.Index(k, `le="`)
		if i < 0 {
			continue
		}
		le := k[i+4:]
		le = le[:strings.IndexByte(le, '"')]
		b, err := strconv.ParseFloat(le, 64)
		if err != nil {
			b = math.Inf(1)
		}
		h.Bounds = append(h.Bounds, b)
		h.Counts = append(h.Counts, v-m0[k])
	}
	idx := make([]int, len(h.Bounds))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return h.Bounds[idx[a]] < h.Bounds[idx[b]] })
	var out hist
	for _, i := range idx {
		out.Bounds, out.Counts = append(out.Bounds, h.Bounds[i]), append(out.Counts, h.Counts[i])
	}
	return out
}

// quantile is the upper bound (ms) of the bucket holding quantile q; 0 with no samples.
func (h hist) quantile(q float64) float64 {
	if len(h.Counts) == 0 || h.Counts[len(h.Counts)-1] == 0 {
		return 0
	}
	want := q * h.Counts[len(h.Counts)-1]
	for i, c := range h.Counts {
		if c >= want {
			return 1000 * h.Bounds[i]
		}
	}
	return math.Inf(1)
}

func (h hist) n() float64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

func (s *summary) addProbe(p *apiProbe) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.APIRequests = len(p.lat) + p.errors
	s.APIErrors = p.errors
	s.APICodes = p.codes
	s.APIP50 = percentile(append([]float64(nil), p.lat...), 0.5)
	s.APIP99 = percentile(append([]float64(nil), p.lat...), 0.99)
}

// addEndLogs reads what the gateway logged at the end of each call ("call ended":
// the reason and the call's media statistics). Echo lines keep no conversation
// record, so an echo run counts from these.
func (s *summary) addEndLogs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	s.Records = map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg                   string
			Reason                string
			RTPIn                 int64 `json:"rtp_in"`
			RTPOut                int64 `json:"rtp_out"`
			Lost, Concealed, Late int64
		}
		if !bytes.HasPrefix(sc.Bytes(), []byte("{")) || json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "call ended" {
			continue
		}
		s.Records["ended ("+l.Reason+")"]++
		s.RecRTPIn += l.RTPIn
		s.RecRTPOut += l.RTPOut
		s.RecLost += max(0, l.Lost)
		s.RecLate += l.Late
		s.RecConcealed += l.Concealed
		s.RecExpected += l.RTPIn + max(0, l.Lost)
	}
	return sc.Err()
}

// addRecords reads every conversation of the run through the API: statuses and end
// reasons from the list, the media statistics each call recorded from its detail.
func (s *summary) addRecords(ctx context.Context, a *api, key string) error {
	s.Records = map[string]int{}
	var ids []int64
	cursor := ""
	for range 1000 {
		path := "/api/conversations?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		page, err := a.do(ctx, "GET", path, key, nil, 200)
		if err != nil {
			return err
		}
		items, _ := page["items"].([]any)
		for _, it := range items {
			cv, _ := it.(map[string]any)
			status, _ := cv["status"].(string)
			reason, _ := cv["end_reason"].(string)
			s.Records[status+" ("+reason+")"]++
			if id, ok := cv["id"].(float64); ok {
				ids = append(ids, int64(id))
			}
		}
		next, _ := page["next_cursor"].(string)
		if more, _ := page["has_more"].(bool); !more || next == "" {
			break
		}
		cursor = next
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	jobs := make(chan int64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				d, err := a.do(ctx, "GET", fmt.Sprintf("/api/conversations/%d", id), key, nil, 200)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				md, _ := d["metadata_"].(map[string]any)
				rtp, _ := md["rtp"].(map[string]any)
				num := func(k string) int64 { v, _ := rtp[k].(float64); return int64(v) }
				s.RecRTPIn += num("packets_received")
				s.RecRTPOut += num("packets_sent")
				s.RecLost += max(0, num("lost"))
				s.RecLate += num("late")
				s.RecConcealed += num("concealed_frames")
				s.RecExpected += num("expected")
				s.RecUnderruns += num("underruns")
				u, _ := rtp["underrun_ms"].(float64)
				s.RecUnderrunMS += u
				if m, ok := rtp["mos"].(float64); ok && m > 0 {
					s.RecMOS = append(s.RecMOS, m)
				}
				mu.Unlock()
			}
		}()
	}
	for _, id := range ids {
		jobs <- id
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

func pct(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * a / b
}

func (s *summary) print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("")
	p("== CXCo gateway load test ==")
	p("run:      %s", s.Config)
	p("machine:  %s", s.Machine)
	p("load avg: %s at start, %s in the steady window, %s at the end (1, 5, 15 min)", s.LoadAtStart, s.LoadInWindow, s.Load)
	p("")
	p("calls:    attempted %d, answered %d (%.2f%%), failed %d", s.Attempted, s.Answered, pct(float64(s.Answered), float64(s.Attempted)), s.Failed)
	for _, k := range sortedKeys(s.FailedBy) {
		p("          SIPp failed %s: %d", k, s.FailedBy[k])
	}
	for _, k := range sortedKeys(s.SIPpExit) {
		if s.SIPpExit[k] != 0 {
			p("          SIPp %s exit code %d", k, s.SIPpExit[k])
		}
	}
	if len(s.Rejections) > 0 {
		var parts []string
		for _, k := range sortedKeys(s.Rejections) {
			parts = append(parts, fmt.Sprintf("%s x%d", k, s.Rejections[k]))
		}
		p("          gateway SIP rejections: %s", strings.Join(parts, ", "))
	}
	var recs []string
	for _, k := range sortedKeys(s.Records) {
		recs = append(recs, fmt.Sprintf("%s %d", k, s.Records[k]))
	}
	p("records:  %s; provider sessions %.0f", strings.Join(recs, ", "), s.ProviderConns)
	p("setup:    INVITE->200 p50 %.1f ms, p99 %.1f ms, max %.1f ms (SIPp rtd, %d calls); SIPp retransmissions %d",
		s.SetupP50, s.SetupP99, s.SetupMax, s.SetupSamples, s.Retransmissions)
	p("")
	if c := s.Capture; c != nil {
		p("RTP up:   caller->gateway on the wire %d packets in %d streams, sequence gaps %d of %d (%.3f%%)",
			c.Up.Packets, c.Up.Flows, c.Up.Lost, c.Up.Expected, pct(float64(c.Up.Lost), float64(c.Up.Expected)))
		p("          gateway received %d (%.3f%% of the wire's), jitter buffer dropped %d late: upstream loss %.3f%%",
			s.RecRTPIn, pct(float64(s.RecRTPIn), float64(c.Up.Packets)), s.RecLate,
			pct(float64(int64(c.Up.Expected)-s.RecRTPIn+s.RecLate), float64(c.Up.Expected)))
		p("          caller's timing on the wire: %d packets > 20 ms and %d > 40 ms late on their stream's clock; %d gaps > 60 ms, longest %s",
			c.Up.Delayed20, c.Up.Delayed40, c.Up.LongGaps, c.Up.MaxGap.Round(time.Millisecond))
		p("RTP down: gateway->caller on the wire %d packets in %d streams, sequence gaps %d of %d (%.3f%%); gateway says it sent %d",
			c.Down.Packets, c.Down.Flows, c.Down.Lost, c.Down.Expected, pct(float64(c.Down.Lost), float64(c.Down.Expected)), s.RecRTPOut)
		p("          pacing: %d packets where 50/s over each stream's life makes %d (%.3f%% short); %d > 20 ms and %d > 40 ms late; %d stalls > 60 ms, longest %s",
			c.Down.Packets, c.Down.ByTime, pct(float64(c.Down.ByTime-c.Down.Packets), float64(c.Down.ByTime)), c.Down.Delayed20, c.Down.Delayed40,
			c.Down.LongGaps, c.Down.MaxGap.Round(time.Millisecond))
		g := &c.Down.Gaps
		p("          callers' inter-packet gaps: p50 %.1f ms, p90 %.1f, p99 %.1f, p99.9 %.1f, max %s; %d of %d over 30 ms, %d over 40 ms",
			ms(g.Percentile(0.5)), ms(g.Percentile(0.9)), ms(g.Percentile(0.99)), ms(g.Percentile(0.999)), c.Down.MaxGap.Round(100*time.Microsecond),
			g.Over(30*time.Millisecond), g.n, g.Over(40*time.Millisecond))
		if c.Dropped != "" {
			p("          capture: %s", c.Dropped)
		}
	} else {
		p("RTP:      (no capture) gateway received %d, sent %d, lost %d of %d expected, late %d",
			s.RecRTPIn, s.RecRTPOut, s.RecLost, s.RecExpected, s.RecLate)
	}
	p("          gateway records: RFC 3550 lost %d of %d expected (%.3f%%), %d frames concealed",
		s.RecLost, s.RecExpected, pct(float64(s.RecLost), float64(s.RecExpected)), s.RecConcealed)
	if len(s.RecMOS) > 0 {
		m := append([]float64(nil), s.RecMOS...)
		p("          agent audio: the outbound queue ran dry inside the agent's speech %d times, %.0f ms of silence in all; callers' MOS (E-model) min %.2f, p50 %.2f",
			s.RecUnderruns, s.RecUnderrunMS, percentile(m, 0), percentile(m, 0.5))
	}
	p("")
	if s.WindowSeconds == 0 {
		p("steady:   the calls never all were up at once: no steady window")
	} else {
		p("steady:   %.0f s with %.0f calls up (load avg %s)", s.WindowSeconds, s.WindowCalls, s.LoadInWindow)
		p("CPU:      gateway %.2f s = %.3f ms per call-second (%.1f%% of one core); SIPp, simulator, Redis and dumpcap %.1f%% of one core",
			s.CPUSeconds, s.CPUmsPerCallSec, 100*s.CPUSeconds/s.WindowSeconds, 100*s.OthersCPUSeconds/s.WindowSeconds)
		p("memory:   RSS %.1f MiB idle, %.1f MiB steady: %.1f KiB per call", float64(s.IdleRSS)/(1<<20), float64(s.RSS)/(1<<20), s.RSSPerCallKiB)
		p("          goroutines %.0f (%.1f per call beyond idle), threads %d", s.Goroutines, s.GoroutinesPerCall, s.Threads)
		p("          of which Go heap (allocated, live and not yet collected) %.1f KiB, goroutine stacks %.1f KiB per call beyond idle", s.HeapPerCallKiB, s.StacksPerCallKiB)
		p("provider: %.0f messages/s to the provider, %.0f/s from it (%.1f and %.1f per call)", s.MsgOutPerSec, s.MsgInPerSec,
			s.MsgOutPerSec/s.WindowCalls, s.MsgInPerSec/s.WindowCalls)
		if s.UpPlayout.n() > 0 {
			p("          caller audio to the websocket (%.0f chunks): added by the gateway after the jitter buffer p50 <= %.2f ms, p99 <= %.2f ms; from the RTP arrival p50 <= %.1f ms, p99 <= %.1f ms (histogram bucket bounds)",
				s.UpPlayout.n(), s.UpPlayout.quantile(0.5), s.UpPlayout.quantile(0.99), s.UpArrival.quantile(0.5), s.UpArrival.quantile(0.99))
		}
		if s.APIRequests > 0 {
			p("API:      %d GETs in the window, p50 %.1f ms, p99 %.1f ms, errors %d, statuses %v", s.APIRequests, s.APIP50, s.APIP99, s.APIErrors, s.APICodes)
		}
	}
	if s.Profiles != "" {
		p("profiles: %s", s.Profiles)
	}
	p("logs:     %s", s.WorkDir)
	if math.IsNaN(s.SetupP99) {
		p("(no INVITE->200 samples: see the SIPp logs)")
	}
}
