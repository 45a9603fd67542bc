// Command loadtest is the gateway's load harness: it builds and starts `cxco serve`
// (on Redis or the embedded store) and `cxco providersim` as separate processes,
// provisions a company, agents and numbers through the API, drives SIPp callers with
// real 20 ms PCMU and PCMA audio at a given call rate, concurrency and hold time,
// captures the RTP on loopback, and prints one summary. Everything listens on
// 127.0.0.1 and every loop is bounded in calls and time.
//
//	deploy/loadtest/run.sh                                # short run, about a minute
//	deploy/loadtest/run.sh -calls 500 -rate 100 -concurrency 500 -hold 60s
//
// See deploy/loadtest/PERFORMANCE.md for what each figure means.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	calls       int
	rate        float64
	concurrency int
	hold        time.Duration
	pcma        float64 // share of calls on PCMA (the rest PCMU)
	format      string  // the agents' audio_format
	store       string  // redis or embedded
	agents      int
	rtpPorts    string
	apiRate     float64
	apiWorkers  int
	capture     bool
	profile     bool
	logLevel    string
	workDir     string
	keep        bool
	binary      string
	gogc        string
	gomaxprocs  string
	chunkMS     int
	jsonOut     string
	talk, gap   time.Duration
	settle      time.Duration
	rtpLo       int
	rtpHi       int
	sippLo      int
	providerArg string
	provider    string // the agents' voice-AI provider: elevenlabs, openai or mediastream
	simURL      string // the simulators' origin (set by run)
	echo        bool   // call echo lines instead of agents
	codec       string // one codec for every call (the Go caller); "" the PCMU/PCMA split of SIPp
	srtp        bool   // the Go caller's calls offer SRTP only
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "gocaller" {
		if err := goCallerMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "gocaller:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	flag.IntVar(&c.calls, "calls", 60, "calls in total (SIPp -m)")
	flag.Float64Var(&c.rate, "rate", 20, "new calls per second (SIPp -r)")
	flag.IntVar(&c.concurrency, "concurrency", 60, "calls up at once at most (SIPp -l)")
	flag.DurationVar(&c.hold, "hold", 25*time.Second, "how long each call lasts after the 200 OK")
	flag.Float64Var(&c.pcma, "pcma", 0.5, "share of calls offering PCMA only (the rest offer PCMU only)")
	flag.StringVar(&c.format, "format", "ulaw_8000", "the agents' audio format: ulaw_8000 or pcm_16000")
	flag.StringVar(&c.codec, "codec", "", "one codec for every call, PCMU, PCMA, G722 or opus, placed by the Go caller (the gateway's own media engine calling, since SIPp 3.6 has neither SRTP nor Opus); empty: SIPp with the -pcma split")
	flag.BoolVar(&c.srtp, "srtp", false, "with -codec: every call offers SRTP only (RTP/SAVP, AES_CM_128_HMAC_SHA1_80)")
	flag.StringVar(&c.store, "store", "redis", "redis (a redis-server started for the run) or embedded")
	flag.IntVar(&c.agents, "agents", 4, "agents (and numbers); calls go to them in turn")
	flag.StringVar(&c.provider, "provider", "elevenlabs", "the agents' voice-AI provider: elevenlabs, openai (OpenAI Realtime) or mediastream (a Media Streams bot); each has its simulator in `cxco providersim`")
	flag.BoolVar(&c.echo, "echo", false, "call echo test lines instead of agents: the media engine alone, no provider (the -agents numbers are made echo lines)")
	flag.StringVar(&c.rtpPorts, "rtp-ports", "12000-15999", "the gateway's RTP port range (also the capture filter)")
	flag.IntVar(&c.sippLo, "sipp-rtp-ports", 16000, "first of the 4000 RTP ports of the SIPp callers (2000 per codec)")
	flag.Float64Var(&c.apiRate, "api-rate", 10, "API GET requests per second during the steady window")
	flag.IntVar(&c.apiWorkers, "api-workers", 2, "concurrent API clients")
	flag.BoolVar(&c.capture, "capture", true, "capture RTP on lo with dumpcap and count packets and sequence gaps")
	flag.BoolVar(&c.profile, "profile", false, "take a CPU profile and an allocation profile of the gateway during the steady window (adds a little CPU)")
	flag.StringVar(&c.logLevel, "log-level", "info", "the gateway's --log-level")
	flag.StringVar(&c.workDir, "dir", "", "work directory for logs, captures and profiles (default: a new one under /tmp)")
	flag.BoolVar(&c.keep, "keep", false, "keep the capture file (it is large)")
	flag.StringVar(&c.binary, "binary", "", "a cxco binary to use instead of building ./cmd/cxco")
	flag.StringVar(&c.gogc, "gogc", "", "GOGC for the gateway (default: Go's)")
	flag.StringVar(&c.gomaxprocs, "gomaxprocs", "", "GOMAXPROCS for the gateway (default: Go's)")
	flag.IntVar(&c.chunkMS, "chunk-ms", 0, "the agents' user_audio_chunk_ms (0: the default, 20)")
	flag.StringVar(&c.jsonOut, "json", "", "also write the summary as JSON to this file")
	flag.DurationVar(&c.talk, "talk", 1200*time.Millisecond, "the caller talks this long ...")
	flag.DurationVar(&c.gap, "gap", 1800*time.Millisecond, "... then is silent this long, over and over")
	flag.DurationVar(&c.settle, "settle", 3*time.Second, "the steady window starts this long after the last call is up")
	flag.Parse()
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Bounded in time whatever happens.
	limit := c.hold + time.Duration(float64(c.calls)/c.rate*float64(time.Second)) + 3*time.Minute
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	sum, err := run(ctx, &c)
	if sum != nil {
		sum.print(os.Stdout)
		if c.jsonOut != "" {
			b, _ := json.MarshalIndent(sum, "", "  ")
			_ = os.WriteFile(c.jsonOut, b, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func (c *config) validate() error {
	var errs []error
	if c.calls < 1 || c.rate <= 0 || c.concurrency < 1 || c.hold < time.Second {
		errs = append(errs, errors.New("-calls, -rate and -concurrency must be positive and -hold at least 1s"))
	}
	if c.calls > 5000 || c.concurrency > 2000 || c.rate > 500 || c.hold > 10*time.Minute {
		errs = append(errs, errors.New("bounded: at most 5000 calls, 2000 at once, 500 a second, 10 minutes each"))
	}
	if c.pcma < 0 || c.pcma > 1 {
		errs = append(errs, errors.New("-pcma is a share, 0 to 1"))
	}
	switch c.provider {
	case "elevenlabs", "openai", "mediastream":
	default:
		errs = append(errs, errors.New("-provider: elevenlabs, openai or mediastream"))
	}
	switch c.codec {
	case "", "PCMU", "PCMA", "G722", "opus":
	default:
		errs = append(errs, errors.New("-codec: PCMU, PCMA, G722 or opus"))
	}
	if c.srtp && c.codec == "" {
		errs = append(errs, errors.New("-srtp needs -codec (SIPp 3.6 has no SRTP)"))
	}
	if c.format != "ulaw_8000" && c.format != "pcm_16000" {
		errs = append(errs, errors.New("-format: ulaw_8000 or pcm_16000"))
	}
	if c.store != "redis" && c.store != "embedded" {
		errs = append(errs, errors.New("-store: redis or embedded"))
	}
	if c.agents < 1 || c.agents > 100 {
		errs = append(errs, errors.New("-agents: 1 to 100"))
	}
	if _, err := fmt.Sscanf(strings.Replace(c.rtpPorts, "-", " ", 1), "%d %d", &c.rtpLo, &c.rtpHi); err != nil || c.rtpLo < 1024 || c.rtpHi > 65535 || c.rtpLo%2 != 0 {
		errs = append(errs, errors.New("-rtp-ports: lo-hi, lo even"))
	} else if (c.rtpHi-c.rtpLo)/2 < c.concurrency+50 {
		errs = append(errs, fmt.Errorf("-rtp-ports %s holds %d port pairs: not enough for %d calls at once", c.rtpPorts, (c.rtpHi-c.rtpLo)/2, c.concurrency))
	}
	if c.sippLo < 1024 || c.sippLo+3999 > 65535 || c.sippLo <= c.rtpHi && c.sippLo+3999 >= c.rtpLo {
		errs = append(errs, errors.New("-sipp-rtp-ports: 4000 ports that do not overlap -rtp-ports"))
	}
	if c.apiRate < 0 || c.apiRate > 200 || c.apiWorkers < 1 || c.apiWorkers > 16 {
		errs = append(errs, errors.New("-api-rate 0..200, -api-workers 1..16"))
	}
	if c.workDir == "" {
		d, err := os.MkdirTemp("", "cxco-loadtest-")
		if err != nil {
			errs = append(errs, err)
		}
		c.workDir = d
	} else if err := os.MkdirAll(c.workDir, 0o755); err != nil {
		errs = append(errs, err)
	}
	c.workDir, _ = filepath.Abs(c.workDir)
	return errors.Join(errs...)
}
