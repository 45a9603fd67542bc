package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cxco/gateway/bridge"
	"github.com/cxco/gateway/bridge/elevenlabs"
	"github.com/cxco/gateway/bridge/elevenlabs/elevenlabssim"
	"github.com/cxco/gateway/bridge/mediastream"
	"github.com/cxco/gateway/bridge/mediastream/mediastreamsim"
	"github.com/cxco/gateway/bridge/openai"
	"github.com/cxco/gateway/bridge/openai/openaisim"
	"github.com/cxco/gateway/callpath/batch"
	"github.com/cxco/gateway/callpath/callstore"
	"github.com/cxco/gateway/control"
	"github.com/cxco/gateway/control/dashboard"
	"github.com/cxco/gateway/control/webhooks"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/media/clock"
	"github.com/cxco/gateway/media/opus"
	"github.com/cxco/gateway/sip"
	"github.com/cxco/gateway/store"
)

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var cfg Config
	fs := serveFlags(&cfg)
	fs.SetOutput(stderr)
	if err := fs.parse(args, getenv); err != nil {
		return err
	}
	cfg.SecretsOnCommandLine = secretsGiven(fs)
	cfg.GCPercentGiven = fs.given["gc-percent"]
	if err := cfg.Validate(); err != nil {
		return err
	}
	advertisedFrom := "--public-ip"
	if cfg.PublicIP == "" {
		cfg.PublicIP, advertisedFrom = defaultAdvertise(cfg.SIPAddr)
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel).With("node", cfg.NodeID)
	started := time.Now()
	for _, f := range cfg.SecretsOnCommandLine {
		env := fs.env[strings.TrimPrefix(f, "--")]
		log.Warn(f+" was given on the command line, where any user of this machine can read it (/proc/<pid>/cmdline, ps): pass it in "+env+" or "+f+"-file instead", "flag", f)
	}
	if cfg.WebhookAllowInsecure {
		log.Warn("--webhook-allow-insecure is on: webhooks may target http:// and loopback, private and metadata addresses (SSRF). It is for development and tests; never run it in production")
	}
	applyMemory(&cfg, getenv, log)
	fdLimit := raiseFDLimit(log)
	tcpCap := cfg.SIPTCPMaxConns
	if tcpCap == 0 {
		var enough bool
		if tcpCap, enough = sipTCPCap(fdLimit, cfg.MaxCalls); !enough {
			log.Warn("the descriptor limit is too low for --max-calls: raise it (ulimit -n, LimitNOFILE=, docker --ulimit nofile=)",
				"fd_limit", fdLimit, "needs_at_least", 3*cfg.MaxCalls+256+32, "max_calls", cfg.MaxCalls)
		}
	}
	log.Info("descriptor limit", "fd_limit", fdLimit, "sip_tcp_max_conns", tcpCap)

	secret := cfg.SecretKey
	if secret == "" {
		secret = store.GenerateSecretKey()
		log.Warn("no --secret-key given: generated one for this run; provider credentials stored now cannot be read after a restart")
	}
	sealer, err := store.NewSealer(secret)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, store.Options{URL: cfg.RedisURL, Sealer: sealer, Logger: log, NodeID: cfg.NodeID})
	if err != nil {
		return err
	}
	defer st.Close()
	generated, err := st.EnsureAgency(ctx, cfg.AgencyKey)
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	// Background work runs until the drain is over, not just until the first signal.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	obs := newObserver()
	st.OnError(obs.redisError)
	st.OnNotJSON(obs.storeNotJSON)
	st.OnNodeLostCorrected(obs.nodeLostCorrected) // before the spool's replay, which corrects
	// Writes that must survive a Redis outage: flushed before exit, else saved to a
	// spool file that the next start on this machine replays (first thing, so the
	// calls they end are billed to their own end, not closed as lost below).
	spoolDir := cfg.SpoolDir
	if st.Embedded() {
		spoolDir = "" // the data it would complete is gone with the process
	}
	spool := store.NewSpool(st, store.SpoolOptions{Logger: log.With("component", "spool"), Dir: spoolDir, Node: cfg.NodeID})
	st.SetSpool(spool)
	node, err := st.Node(store.NodeOptions{Lease: cfg.NodeLease, Logger: log.With("component", "node"), OnClosed: obs.nodeLost})
	if err != nil {
		spool.Close(0)
		return err
	}
	nodeCtx, stopNode := context.WithCancel(context.WithoutCancel(ctx))
	nodeDone := make(chan struct{})
	defer func() {
		spool.Close(cfg.SpoolWait)
		// The heartbeat runs until the spool is done: a node still writing the
		// end of its calls is not lost.
		stopNode()
		<-nodeDone
		lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		node.Leave(lctx)
		lcancel()
	}()
	if rs, err := spool.Replay(); err != nil {
		log.Error("spool directory unreadable: nothing replayed", "dir", spoolDir, "err", err)
	} else if rs.Files > 0 || rs.Skipped > 0 {
		log.Warn("replaying writes saved at an earlier shutdown", "files", rs.Files, "writes", rs.Writes, "damaged_lines_skipped", rs.Skipped, "busy", rs.Busy)
		fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
		if err := spool.Flush(fctx); err != nil {
			log.Warn("spool replay still running; going on", "pending", spool.Pending())
		}
		fcancel()
	}
	if err := node.Start(ctx); err != nil {
		close(nodeDone)
		return fmt.Errorf("node lease: %w", err)
	}
	go func() { defer close(nodeDone); node.Run(nodeCtx) }()

	// The voice-AI provider: the given URL, else the simulator in this process.
	providerURL := cfg.ProviderURL
	if providerURL == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("provider simulator: %w", err)
		}
		simHandler := elevenlabssim.New(elevenlabssim.Options{Logger: log.With("component", "providersim")})
		sim := &http.Server{Handler: simHandler, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() { defer wg.Done(); _ = sim.Serve(ln) }()
		defer func() { _ = simHandler.Close(); _ = sim.Close() }()
		providerURL = "http://" + ln.Addr().String()
		if cfg.ProviderAPIKey == "" {
			cfg.ProviderAPIKey = "sim-platform-key"
		}
		log.Info("voice-AI provider: built-in simulator", "url", providerURL)
	}
	if cfg.ProviderAPIKey == "" {
		log.Warn("no --provider-api-key: only companies with their own elevenlabs credentials can publish agents")
	}
	prov := &elevenlabs.Provisioner{Client: elevenlabs.NewClient(providerURL), Store: st, PlatformKey: cfg.ProviderAPIKey, Log: log}
	eleven := &elevenlabs.Provider{Provisioner: prov, Log: log.With("component", "elevenlabs")}

	// OpenAI Realtime: the given URL or OpenAI's with a key, else a simulator in
	// this process (the one-command start needs no account).
	openaiURL, openaiKey := cfg.OpenAIURL, cfg.OpenAIAPIKey
	if openaiURL == "" && openaiKey == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("OpenAI simulator: %w", err)
		}
		simHandler := openaisim.New(openaisim.Options{Logger: log.With("component", "openaisim")})
		sim := &http.Server{Handler: simHandler, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() { defer wg.Done(); _ = sim.Serve(ln) }()
		defer func() { _ = simHandler.Close(); _ = sim.Close() }()
		openaiURL, openaiKey = "http://"+ln.Addr().String(), "sim-platform-key"
		log.Info("OpenAI Realtime: built-in simulator", "url", openaiURL)
	}
	oai := &openai.Provider{BaseURL: openaiURL, Model: cfg.OpenAIModel, PlatformKey: openaiKey, Store: st,
		Log: log.With("component", "openai")}
	bot := &mediastream.Provider{Store: st, AllowPrivate: cfg.BotAllowInsecure, Log: log.With("component", "mediastream")}
	connector := &bridge.Connector{Providers: map[string]bridge.Provider{eleven.Slug(): eleven, oai.Slug(): oai, bot.Slug(): bot},
		Timeout: cfg.ProviderTimeout, Log: log.With("component", "bridge"), Observer: obs, OnUpstream: obs.ProviderUpstream()}
	obs.providerStats = connector.Stats
	defer connector.Close()

	hooks, err := webhooks.New(webhooks.Options{Store: st, Logger: log.With("component", "webhooks"), NodeID: cfg.NodeID,
		Retries: cfg.WebhookRetries, DisableAfter: cfg.WebhookDisableAfter, AllowInsecure: cfg.WebhookAllowInsecure})
	if err != nil {
		return err
	}

	obs.webhookStats = hooks.Stats
	// Calls are routed and recorded through the call path's view of the store.
	calls := callstore.New(st, log.With("component", "calls"))
	// The media engine and the SIP user agent.
	wheel := clock.New(clock.Options{})
	wheel.Start()
	defer wheel.Stop()
	ports, err := media.NewPortPool(cfg.RTPMin, cfg.RTPMax)
	if err != nil {
		return err
	}
	sipSrv, err := sip.New(sip.Options{
		Addr: cfg.SIPAddr, PublicIP: netip.MustParseAddr(cfg.PublicIP),
		DefaultTrunk: cfg.DefaultTrunk, DefaultTrunkPassword: cfg.TrunkPassword, Trunks: st,
		MaxCalls: cfg.MaxCalls, RTPTimeout: cfg.RTPTimeout,
		EchoNumber: cfg.EchoNumber, Calls: calls, Live: st, Traces: st, Connector: connector, Ports: ports, Wheel: wheel,
		JitterMin: cfg.JitterMin, JitterMax: cfg.JitterMax, Concealment: cfg.Concealment, Logger: log.With("component", "sip"),
		TransferTimeout: cfg.TransferTimeout, Observer: obs, T1: cfg.SIPT1,
		TLSAddr: cfg.SIPTLSAddr, TLSCertFile: cfg.SIPTLSCert, TLSKeyFile: cfg.SIPTLSKey, TLSCAFile: cfg.SIPTLSCA,
		RegisterRetry: cfg.RegisterRetry, FloodRate: sourceRate(cfg.SIPSourceRate), FloodBurst: 2 * cfg.SIPSourceRate,
		SIPTrace: cfg.SIPTrace, TraceKeep: cfg.SIPTraceKeep, Node: cfg.NodeID,
		GlobalRate: sourceRate(cfg.SIPGlobalRate), CallRate: sourceRate(cfg.SIPCallRate),
		TCPMaxConns: tcpCap, TCPMaxConnsPerSource: min(cfg.SIPTCPPerSource, tcpCap),
		TCPReadTimeout: cfg.SIPTCPReadTimeout, TCPIdleTimeout: cfg.SIPTCPIdleTimeout,
		RTPLatching: cfg.RTPLatching, RTPSources: &obs.rtpSources,
	})
	if err != nil {
		return err
	}
	obs.activeCalls, obs.draining, obs.registrations = sipSrv.ActiveCalls, sipSrv.Draining, sipSrv.Registrations
	obs.sipTCP, obs.fdLimit = sipSrv.TCPStats, fdLimit
	healthz, readyz := health(st, sipSrv, cfg.ReadyzRegistration)

	// The dashboard's WebRTC test calls: same media engine, provider connector and
	// port range as phone calls; ended (shutdown) before the engine stops.
	testCalls, err := bridge.NewTestCalls(bridge.TestCallOptions{Connector: connector, Calls: calls, Wheel: wheel,
		JitterMin: cfg.JitterMin, JitterMax: cfg.JitterMax, Concealment: cfg.Concealment, PublicIP: netip.MustParseAddr(cfg.PublicIP),
		PortMin: uint16(cfg.RTPMin), PortMax: uint16(cfg.RTPMax), MaxCalls: cfg.MaxCalls, RTPTimeout: cfg.RTPTimeout,
		Logger: log.With("component", "webrtc")})
	if err != nil {
		return err
	}
	defer testCalls.Close()
	extra := map[string]http.Handler{"GET /healthz": healthz, "GET /readyz": readyz, "GET /metrics": obs.reg.Handler()}
	maps.Copy(extra, dashboard.Routes())

	api := control.New(control.Options{
		Store: st, Provisioner: bridge.Provisioning{ElevenLabs: prov}, Logger: log.With("component", "api"),
		WebhookAllowInsecure: cfg.WebhookAllowInsecure, WhatsAppVerifyDelay: cfg.WhatsAppVerifyDelay,
		Observe: obs.api, Extra: extra, TestCaller: testCalls, Outbound: outboundCaller{sipSrv, st}, Version: version,
		Trunks: trunkRuntime{sipSrv}, DefaultTrunkHasPassword: cfg.TrunkPassword != "",
		ReadTimeout: cfg.HTTPReadTimeout, WriteTimeout: cfg.HTTPWriteTimeout, KeyConcurrency: cfg.APIKeyConcurrency,
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return listenError("--http", cfg.HTTPAddr, err)
	}
	// The body's read deadline and the answer's write deadline are set per request
	// by the control plane (--http-read-timeout, --http-write-timeout), so a handler
	// that streams can lift them; the headers have their own deadline here.
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: cfg.HTTPIdleTimeout,
		MaxHeaderBytes: 64 << 10, ErrorLog: httpErrorLog(log)}
	srv.RegisterOnShutdown(api.CloseStreams) // live-call event streams end, so Shutdown need not wait for them
	// Whatever makes start-up fail from here on (a busy SIP port), the HTTP server
	// stops with it: the deferred wg.Wait would otherwise wait for it forever.
	defer srv.Close()
	httpErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			httpErr <- err
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); api.RunWhatsApp(runCtx, nil) }()
	wg.Add(1)
	go func() { defer wg.Done(); hooks.Run(runCtx) }()

	if err := sipSrv.Listen(); err != nil {
		return listenError("--sip", cfg.SIPAddr, err)
	}
	defer sipSrv.Close()
	// Batch calling: this node works batches it holds the lease of; the drain
	// stops new calls and the worker waits for those under way. A batch's lease
	// lasts as long as the node's (--node-lease): a node lost to the others has
	// lost its batches too, which another node takes up.
	batchCtx, stopBatches := context.WithCancel(runCtx)
	defer stopBatches()
	wg.Add(1)
	go func() {
		defer wg.Done()
		batch.New(batch.Options{Store: st, Dialer: batchDialer{sip: sipSrv, st: st}, Node: cfg.NodeID,
			LeaseTTL: cfg.NodeLease, Log: log.With("component", "batch")}).Run(batchCtx)
	}()

	banner(stdout, ln.Addr().String(), generated, st.Embedded())
	sipBanner(stdout, sipSrv, cfg, advertisedFrom)
	mediaBanner(stdout, &cfg.DefaultTrunk)
	log.Info("gateway ready", "http", ln.Addr().String(), "embedded_store", st.Embedded(), "startup_ms", time.Since(started).Milliseconds(), "version", version)

	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	// SIGHUP reads the TLS certificates and keys again: new connections get them,
	// the ones up (and their calls) keep theirs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-sigs:
			break wait
		case err = <-httpErr:
			break wait
		case <-hup:
			if rerr := sipSrv.ReloadTLS(); rerr != nil {
				log.Error("SIGHUP: TLS certificates not reloaded; the old ones stay in use", "err", rerr)
			} else {
				log.Info("SIGHUP: TLS certificates reloaded")
			}
		}
	}
	stopBatches()
	drain(log, sipSrv, sigs, cfg.DrainTimeout)
	log.Info("shutting down")
	cancel()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	return err
}

// listenError says which flag's address could not be bound, in the words an
// operator acts on: "--sip 127.0.0.1:5060: address already in use".
func listenError(flag, addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%s %s: address already in use (another process listens there; pick another port or stop it)", flag, addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%s %s: this machine has no such address", flag, addr)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%s %s: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)", flag, addr)
	}
	return fmt.Errorf("%s %s: %w", flag, addr, err)
}

func banner(w io.Writer, httpAddr, agencyKey string, embedded bool) {
	host, port, _ := net.SplitHostPort(httpAddr)
	everywhere := host == "" || host == "::" || host == "0.0.0.0"
	if everywhere {
		host = "127.0.0.1"
	}
	fmt.Fprintf(w, "CXCo gateway %s\n  API:        http://%s/api\n", version, net.JoinHostPort(host, port))
	fmt.Fprintf(w, "  API docs:   http://%s/api/docs\n", net.JoinHostPort(host, port))
	fmt.Fprintf(w, "  Dashboard:  http://%s/   (sign in with the agency key to manage companies and numbers)\n", net.JoinHostPort(host, port))
	if everywhere {
		fmt.Fprintf(w, "  HTTP:       listening on every address (--http 127.0.0.1:%s keeps it to this machine)\n", port)
	}
	if agencyKey != "" {
		fmt.Fprintf(w, "  Agency key: %s   (shown once; to keep it, put it in CXCO_AGENCY_KEY or in a file for --agency-key-file)\n", agencyKey)
	}
	if embedded {
		fmt.Fprintln(w, "  Store:      embedded, in memory: all data is lost when the gateway exits (use --redis for real data)")
	}
}

// defaultAdvertise is the address written into Contact and SDP when --public-ip is
// not given: the --sip address when it names one (a gateway bound to 127.0.0.1
// must not advertise an address where nothing listens), else the machine's first
// non-loopback address. It says where the choice came from, for the banner.
func defaultAdvertise(sipAddr string) (ip, from string) {
	host, _, _ := net.SplitHostPort(sipAddr)
	if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		return a.Unmap().String(), "the --sip address"
	}
	return defaultPublicIP(), "the first non-loopback address; set --public-ip if the trunk reaches this machine at another"
}

// sipBanner says where SIP and RTP listen, what Contact and SDP advertise, and who
// may send INVITEs: the three things to check when a carrier's first call fails.
func sipBanner(w io.Writer, s *sip.Server, cfg Config, advertisedFrom string) {
	fmt.Fprintf(w, "  SIP:        %s (UDP and TCP)\n", strings.Join(s.Addrs(), ", "))
	for _, a := range s.TLSAddrs() {
		fmt.Fprintf(w, "  SIP TLS:    %s (sips:, transport=tls)\n", a)
	}
	fmt.Fprintf(w, "  Advertised: %s in Contact and SDP (%s)\n", cfg.PublicIP, advertisedFrom)
	media := "every address"
	if ip := s.MediaIP(); ip.IsValid() {
		media = ip.String()
	}
	fmt.Fprintf(w, "  RTP:        UDP ports %d-%d on %s\n", cfg.RTPMin, cfg.RTPMax, media)
	fmt.Fprintf(w, "  Trunks:     SIP accepted from %s (--trunk-allow) and the trunks at /api/agency/trunks; other sources are dropped\n",
		strings.Join(cfg.DefaultTrunk.Allow, ", "))
}

// mediaBanner says which codecs this gateway carries (Opus only where libopus
// loads, and why not otherwise) and the default trunk's codec order and SRTP
// policy (other trunks set their own, /api/agency/trunks).
func mediaBanner(w io.Writer, def *store.Trunk) {
	lib := fmt.Sprint(opus.Load())
	if v := opus.Version(); v != "" {
		lib = v
	}
	order := strings.Join(def.Codecs, ", ") + ", in that order"
	if len(def.Codecs) == 0 {
		order = "PCMU and PCMA, in the caller's order"
	}
	fmt.Fprintf(w, "  Codecs:     %s can be carried (%s); the default trunk takes %s (--trunk-codecs)\n",
		strings.Join(media.Codecs(), ", "), lib, order)
	fmt.Fprintf(w, "  SRTP:       %s on the default trunk (--trunk-srtp disabled|optional|required; SDES keys travel in the SDP, so use SIP over TLS)\n",
		def.SRTPPolicy())
}

func providersimCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var addr, keys, accounts, hooks, interruption, endCall, patch, signedBase, logFormat, logLevel string
	fs := newFlagSet("providersim", "Usage: cxco providersim [flags]\n\nRuns a local stand-in for the ElevenLabs Agents platform (REST and the conversation websocket),\nwritten from the provider's published contract (bridge/elevenlabs/elevenlabssim), with OpenAI Realtime\nat /v1/realtime (bridge/openai/openaisim) and a Media Streams bot at /bot (bridge/mediastream/mediastreamsim).")
	fs.SetOutput(stderr)
	fs.str(&addr, "listen", "CXCO_PROVIDERSIM_ADDR", "127.0.0.1:8090", "listen address")
	fs.str(&keys, "api-keys", "CXCO_PROVIDERSIM_API_KEYS", "", "comma-separated xi-api-key values to accept, each its own account (default: any non-empty key, each its own account)")
	fs.str(&accounts, "accounts", "CXCO_PROVIDERSIM_ACCOUNTS", "", "accounts and their keys: name=key1|key2,name2=key3 (an agent is invisible to another account's key)")
	fs.str(&hooks, "hooks", "CXCO_PROVIDERSIM_HOOKS", "", "test hooks to turn on, comma-separated: "+strings.Join(elevenlabssim.Hooks, ", ")+" (default: none, strict)")
	fs.str(&interruption, "interruption-ids", "CXCO_PROVIDERSIM_INTERRUPTION_IDS", string(elevenlabssim.ReuseID), "event id after a barge-in: reuse (the next reply carries the interruption's id) or interrupted (the interruption carries the cut reply's id)")
	fs.str(&endCall, "end-call-order", "CXCO_PROVIDERSIM_END_CALL_ORDER", string(elevenlabssim.ToolResponseFirst), "end_call: tool_first (agent_tool_response before the farewell audio) or farewell_first")
	fs.str(&patch, "patch-mode", "CXCO_PROVIDERSIM_PATCH_MODE", string(elevenlabssim.PatchMerge), "PATCH of an agent: merge (nested objects merge) or replace (a section given replaces the stored one)")
	fs.str(&signedBase, "signed-url-base", "CXCO_PROVIDERSIM_SIGNED_URL_BASE", "", "ws:// or wss:// origin that signed URLs point at (default: the host asked)")
	fs.str(&logFormat, "log-format", "CXCO_LOG_FORMAT", "json", "json or text")
	fs.str(&logLevel, "log-level", "CXCO_LOG_LEVEL", "info", "debug, info, warn or error")
	if err := fs.parse(args, getenv); err != nil {
		return err
	}
	opts := elevenlabssim.Options{InterruptionIDs: elevenlabssim.InterruptionIDs(interruption), EndCallOrder: elevenlabssim.EndCallOrder(endCall),
		PatchMode: elevenlabssim.PatchMode(patch), SignedURLBase: signedBase, Hooks: splitComma(hooks), Accounts: map[string][]string{}}
	if opts.InterruptionIDs != elevenlabssim.ReuseID && opts.InterruptionIDs != elevenlabssim.InterruptedID {
		return fmt.Errorf("--interruption-ids %q: want reuse or interrupted", interruption)
	}
	if opts.EndCallOrder != elevenlabssim.ToolResponseFirst && opts.EndCallOrder != elevenlabssim.FarewellFirst {
		return fmt.Errorf("--end-call-order %q: want tool_first or farewell_first", endCall)
	}
	if opts.PatchMode != elevenlabssim.PatchMerge && opts.PatchMode != elevenlabssim.PatchReplace {
		return fmt.Errorf("--patch-mode %q: want merge or replace", patch)
	}
	for _, h := range opts.Hooks {
		if !slices.Contains(elevenlabssim.Hooks, h) {
			return fmt.Errorf("--hooks: unknown hook %q (known: %s)", h, strings.Join(elevenlabssim.Hooks, ", "))
		}
	}
	for _, k := range splitComma(keys) {
		opts.Accounts[k] = []string{k}
	}
	for _, a := range splitComma(accounts) {
		name, list, ok := strings.Cut(a, "=")
		if !ok || name == "" || list == "" {
			return fmt.Errorf("--accounts %q: want name=key1|key2", a)
		}
		opts.Accounts[name] = append(opts.Accounts[name], strings.Split(list, "|")...)
	}
	log := newLogger(stderr, logFormat, logLevel)
	opts.Logger = log
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Beside ElevenLabs: OpenAI Realtime at /v1/realtime (--openai-url is this
	// origin) and a reference Media Streams bot at /bot (an agent's config.bot.url
	// ws://…/bot, with --bot-allow-insecure).
	oai := openaisim.New(openaisim.Options{Logger: log.With("sim", "openai")})
	bot := mediastreamsim.New(mediastreamsim.Options{Logger: log.With("sim", "mediastream")})
	defer func() { _ = oai.Close(); _ = bot.Close() }()
	mux := http.NewServeMux()
	mux.Handle("/v1/realtime", oai)
	mux.Handle("/bot", bot)
	mux.Handle("/", elevenlabssim.New(opts))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "provider simulator listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		return err
	}
}

// httpErrorLog carries net/http's own messages (accept errors, TLS handshakes)
// into the structured log.
func httpErrorLog(log *slog.Logger) *stdlog.Logger {
	return slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn)
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// sourceRate maps a --sip-*-rate flag to its sip.Options field (0 there means
// the default; a negative rate, no limit).
func sourceRate(perSecond int) float64 {
	if perSecond == 0 {
		return -1
	}
	return float64(perSecond)
}
