package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/control/metrics"
	"github.com/cxco/gateway/control/webhooks"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
)

// observer turns the events of sip, bridge, control and store into metrics.
type observer struct {
	reg *metrics.Registry

	callsStarted   *metrics.CounterVec
	callsEnded     *metrics.CounterVec
	sipResponses   *metrics.CounterVec
	sipDropped     *metrics.CounterVec
	sipAuth        *metrics.CounterVec
	setup          *metrics.HistogramVec
	rtpLoss        *metrics.HistogramVec
	rtpJitter      *metrics.HistogramVec
	jbDepth        *metrics.HistogramVec
	concealed      *metrics.CounterVec
	mos            *metrics.HistogramVec
	rtpPackets     *metrics.CounterVec
	providerRTT    *metrics.HistogramVec
	providerConn   *metrics.HistogramVec
	providerErrs   *metrics.CounterVec
	reconnects     *metrics.CounterVec
	upstream       *metrics.HistogramVec
	apiRequests    *metrics.CounterVec
	apiLatency     *metrics.HistogramVec
	redisErrors    *metrics.CounterVec
	notJSON        *metrics.CounterVec
	swept          *metrics.CounterVec
	sweptFixed     *metrics.CounterVec
	startedAt      time.Time
	draining       func() bool // the SIP server's Drain was called
	activeCalls    func() int  // calls in setup or up
	sipTCP         func() sip.TCPStats
	rtpSources     media.SourceCounters // RTP the calls' source policies refused
	fdLimit        uint64
	providerStats  func() *bridge.Stats
	registrations  func() []sip.RegistrationStatus
	webhookStats   func() webhooks.Stats
	lastRedisError atomic.Value
}

func newObserver() *observer {
	r := metrics.NewRegistry()
	secs := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	o := &observer{reg: r, startedAt: time.Now(),
		callsStarted: r.NewCounterVec("cxco_calls_started_total", "INVITEs that began a call."),
		callsEnded:   r.NewCounterVec("cxco_calls_ended_total", "Calls that ended, by end reason.", "reason"),
		sipResponses: r.NewCounterVec("cxco_sip_rejections_total", "INVITEs and requests refused, by SIP status.", "status"),
		sipDropped:   r.NewCounterVec("cxco_sip_dropped_total", "SIP messages dropped without an answer, by cause.", "cause"),
		sipAuth:      r.NewCounterVec("cxco_sip_auth_total", "Trunk digest authentications, by result (ok, challenge, stale, failed, replay, locked).", "result"),
		setup:        r.NewHistogramVec("cxco_call_setup_seconds", "From INVITE to answer (provider session included).", secs),
		rtpLoss:      r.NewHistogramVec("cxco_rtp_loss_ratio", "Inbound RTP loss of each ended call.", []float64{0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2}),
		rtpJitter:    r.NewHistogramVec("cxco_rtp_jitter_seconds", "RFC 3550 interarrival jitter of each ended call.", []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08}),
		jbDepth:      r.NewHistogramVec("cxco_jitter_buffer_depth_seconds", "Largest jitter-buffer depth of each ended call.", []float64{0.02, 0.03, 0.04, 0.06, 0.08, 0.1, 0.12, 0.2}),
		concealed:    r.NewCounterVec("cxco_jitter_buffer_concealed_frames_total", "20 ms frames of caller audio that was lost or late and concealed by the jitter buffer (not hold or pauses)."),
		mos:          r.NewHistogramVec("cxco_call_mos", "E-model (ITU-T G.107) MOS of each ended call's inbound audio.", []float64{1.5, 2, 2.5, 3, 3.5, 3.8, 4, 4.2, 4.3, 4.4, 4.5}),
		rtpPackets:   r.NewCounterVec("cxco_rtp_packets_total", "RTP packets of ended calls, by direction.", "direction"),
		providerRTT:  r.NewHistogramVec("cxco_provider_rtt_seconds", "Provider websocket round trip (its ping_ms).", secs),
		providerConn: r.NewHistogramVec("cxco_provider_connect_seconds", "From dial to conversation_initiation_metadata.", secs),
		providerErrs: r.NewCounterVec("cxco_provider_connect_errors_total", "Provider sessions that could not be opened."),
		reconnects:   r.NewCounterVec("cxco_provider_reconnects_total", "Provider websocket reconnects, by result.", "result"),
		upstream: r.NewHistogramVec("cxco_provider_upstream_seconds", "For each chunk of caller audio, how long it took to leave on the provider websocket: from the RTP arrival of its newest frame (from=arrival), and from the jitter buffer's release of its last frame (from=playout: what the gateway adds to the buffer's depth).",
			[]float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.25}, "from"),
		apiRequests: r.NewCounterVec("cxco_api_requests_total", "API requests by route and status.", "route", "status"),
		apiLatency:  r.NewHistogramVec("cxco_api_request_seconds", "API request latency by route.", secs, "route"),
		redisErrors: r.NewCounterVec("cxco_redis_errors_total", "Redis commands that failed."),
		notJSON:     r.NewCounterVec("cxco_store_not_json_total", "Background writes (a call's end, transcript entry, metadata, live call, SIP trace) that held values JSON cannot hold (NaN, infinity): stored without them, each logged with the values' names.", "write"),
		// A counter cannot take back what it counted, and the correction comes
		// later, from another process (the lost node's own, replaying its end):
		// so the corrections are a counter of their own, and the calls actually
		// lost are the difference of the sums over the nodes.
		swept:      r.NewCounterVec("cxco_conversations_node_lost_total", "Conversations this node closed as node_lost (their node's lease lapsed, or they were left by an earlier process with this node id). Some turn out not lost: their own node writes their true end later (cxco_conversations_node_lost_corrected_total). Calls actually lost: sum of this minus sum of that, over the nodes."),
		sweptFixed: r.NewCounterVec("cxco_conversations_node_lost_corrected_total", "Conversations closed as node_lost by another node whose true end this node wrote over that record later (replayed from its spool file at a restart, or written once it got Redis back): not lost after all."),
	}
	r.OnScrape(o.scrape)
	return o
}

// sip.Observer and sip.AuthObserver.
var _ interface {
	sip.Observer
	sip.AuthObserver
} = (*observer)(nil)

func (o *observer) CallStarted()                     { o.callsStarted.With().Inc() }
func (o *observer) CallAnswered(setup time.Duration) { o.setup.With().Observe(setup.Seconds()) }
func (o *observer) Rejected(status int)              { o.sipResponses.With(strconv.Itoa(status)).Inc() }
func (o *observer) Dropped(cause string)             { o.sipDropped.With(cause).Inc() }
func (o *observer) Auth(result string)               { o.sipAuth.With(result).Inc() }
func (o *observer) CallEnded(reason string, _ int, s media.Stats) {
	o.callsEnded.With(reason).Inc()
	if s.Expected > 0 {
		o.rtpLoss.With().Observe(max(0, float64(s.CumulativeLost)) / float64(s.Expected))
	}
	if s.PacketsReceived > 0 {
		o.rtpJitter.With().Observe(s.Jitter.Seconds())
		o.jbDepth.With().Observe(s.JitterDepthMax.Seconds())
	}
	o.concealed.With().Add(float64(s.Concealed))
	if s.Quality.MOS > 0 {
		o.mos.With().Observe(s.Quality.MOS)
	}
	o.rtpPackets.With("in").Add(float64(s.PacketsReceived))
	o.rtpPackets.With("out").Add(float64(s.PacketsSent))
}

// bridge.Observer.
func (o *observer) ProviderRTT(d time.Duration) { o.providerRTT.With().Observe(d.Seconds()) }
func (o *observer) ProviderReconnect(ok bool) {
	r := "failed"
	if ok {
		r = "ok"
	}
	o.reconnects.With(r).Inc()
}

// ProviderUpstream is bridge.Connector.OnUpstream (every 20 ms chunk of every
// call: the two histograms are looked up once).
func (o *observer) ProviderUpstream() func(fromArrival, fromPlayout time.Duration) {
	arrival, playout := o.upstream.With("arrival"), o.upstream.With("playout")
	return func(fromArrival, fromPlayout time.Duration) {
		arrival.Observe(fromArrival.Seconds())
		playout.Observe(fromPlayout.Seconds())
	}
}

func (o *observer) ProviderConnect(d time.Duration, err error) {
	if err != nil {
		o.providerErrs.With().Inc()
		return
	}
	o.providerConn.With().Observe(d.Seconds())
}

// api is control.Options.Observe.
func (o *observer) api(route string, status int, d time.Duration) {
	o.apiRequests.With(route, strconv.Itoa(status)).Inc()
	o.apiLatency.With(route).Observe(d.Seconds())
}

// storeNotJSON counts a write stored without its values JSON cannot hold (store.OnNotJSON).
func (o *observer) storeNotJSON(what string) { o.notJSON.With(what).Inc() }

func (o *observer) redisError(err error) {
	o.redisErrors.With().Inc()
	o.lastRedisError.Store(err.Error())
}

// scrape writes what is read at scrape time: live calls, provider traffic, webhook
// outcomes, the process.
func (o *observer) scrape(w io.Writer) {
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
	}
	counter := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %g\n", name, help, name, name, v)
	}
	if o.activeCalls != nil {
		gauge("cxco_calls_active", "Calls in setup or up.", float64(o.activeCalls()))
	}
	if o.draining != nil {
		d := 0.0
		if o.draining() {
			d = 1
		}
		gauge("cxco_draining", "1 while the node drains (no new calls).", d)
	}
	if o.registrations != nil {
		regs := o.registrations()
		fmt.Fprintf(w, "# HELP cxco_sip_registration_up 1 while the trunk's registration is bound at the registrar named.\n# TYPE cxco_sip_registration_up gauge\n")
		for _, r := range regs {
			up := 0
			if r.State == sip.RegRegistered {
				up = 1
			}
			fmt.Fprintf(w, "cxco_sip_registration_up{trunk=%q,registrar=%q} %d\n", r.Trunk, r.Registrar, up)
		}
		fmt.Fprintf(w, "# HELP cxco_sip_registration_failures Consecutive failed registration attempts of a trunk (0 once registered).\n# TYPE cxco_sip_registration_failures gauge\n")
		for _, r := range regs {
			fmt.Fprintf(w, "cxco_sip_registration_failures{trunk=%q} %d\n", r.Trunk, r.Failures)
		}
	}
	if o.sipTCP != nil {
		ts := o.sipTCP()
		gauge("cxco_sip_tcp_connections", "SIP TCP connections open now.", float64(ts.Open))
		counter("cxco_sip_tcp_accept_errors_total", "SIP TCP accept calls that failed (descriptors exhausted, ...); the listener keeps accepting.", float64(ts.AcceptErrors))
	}
	fmt.Fprintf(w, "# HELP cxco_rtp_source_packets_total RTP and RTCP packets by what the source check decided: refused (from an address the call's policy does not accept: outside the trunk's networks, not the SDP's address), ignored (an acceptable address that is not the latched source).\n# TYPE cxco_rtp_source_packets_total counter\n")
	fmt.Fprintf(w, "cxco_rtp_source_packets_total{decision=\"refused\"} %d\ncxco_rtp_source_packets_total{decision=\"ignored\"} %d\n", o.rtpSources.Refused.Load(), o.rtpSources.Ignored.Load())
	counter("cxco_rtp_source_relatched_total", "Times a call's RTP source moved without a re-INVITE (silence, then the same SSRC and sequence from a new address).", float64(o.rtpSources.Relatched.Load()))
	if o.fdLimit > 0 {
		gauge("process_open_fds", "Open file descriptors.", float64(openFDs()))
		gauge("process_max_fds", "The descriptor limit (RLIMIT_NOFILE).", float64(o.fdLimit))
	}
	if o.providerStats != nil {
		ps := o.providerStats()
		fmt.Fprintf(w, "# HELP cxco_provider_messages_total Provider websocket messages, by direction.\n# TYPE cxco_provider_messages_total counter\n")
		fmt.Fprintf(w, "cxco_provider_messages_total{direction=\"in\"} %d\ncxco_provider_messages_total{direction=\"out\"} %d\n", ps.MessagesIn.Load(), ps.MessagesOut.Load())
		counter("cxco_provider_sessions_total", "Provider sessions opened.", float64(ps.Sessions.Load()))
	}
	if o.webhookStats != nil {
		ws := o.webhookStats()
		fmt.Fprintf(w, "# HELP cxco_webhook_deliveries_total Webhook delivery attempts by this node, by outcome.\n# TYPE cxco_webhook_deliveries_total counter\n")
		fmt.Fprintf(w, "cxco_webhook_deliveries_total{outcome=\"succeeded\"} %d\ncxco_webhook_deliveries_total{outcome=\"failed\"} %d\n", ws.Succeeded, ws.Failed)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge("go_goroutines", "Goroutines.", float64(runtime.NumGoroutine()))
	gauge("go_memstats_heap_alloc_bytes", "Heap in use.", float64(ms.HeapAlloc))
	gauge("go_memstats_heap_inuse_bytes", "Heap spans in use (live objects and their spans' free slots).", float64(ms.HeapInuse))
	gauge("go_memstats_stack_inuse_bytes", "Goroutine stacks.", float64(ms.StackInuse))
	gauge("process_resident_memory_bytes", "Resident memory.", float64(rss()))
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		counter("process_cpu_seconds_total", "CPU time of the process.", cpu.Seconds())
	}
	gauge("process_start_time_seconds", "When the process started.", float64(o.startedAt.Unix()))
}

// rss reads VmRSS from /proc/self/status (0 where there is none).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// nodeLost counts the conversations closed for a lost node (store.NodeOptions.OnClosed).
func (o *observer) nodeLost(_ string, closed []*store.Conversation) {
	o.swept.With().Add(float64(len(closed)))
}

// nodeLostCorrected counts a node_lost end this node corrected with the call's true
// end (store.OnNodeLostCorrected).
func (o *observer) nodeLostCorrected(*store.Conversation) { o.sweptFixed.With().Inc() }

// health serves /healthz (the process answers) and /readyz (Redis takes writes:
// every cluster master, or the sentinels' current master; SIP listening and
// accepting; not draining): a load balancer or Kubernetes stops sending work to a
// node that is not ready.
func health(st *store.Store, sipSrv *sip.Server, needRegistration bool) (healthz, readyz http.Handler) {
	healthz = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"ok"}`)
	})
	readyz = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		var problems []string
		if err := st.CheckWritable(ctx); err != nil {
			problems = append(problems, "redis cannot take writes")
		}
		if sipSrv == nil {
			problems = append(problems, "sip not listening")
		} else {
			problems = append(problems, sipSrv.Health()...)
		}
		if needRegistration && sipSrv != nil {
			for _, r := range sipSrv.Registrations() {
				if r.State != sip.RegRegistered {
					problems = append(problems, "trunk "+r.Trunk+" not registered")
				}
			}
		}
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "unavailable", "problems": problems})
			return
		}
		fmt.Fprint(w, `{"status":"ready"}`)
	})
	return healthz, readyz
}
