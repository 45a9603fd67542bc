package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/store"
)

// Config is everything `cxco serve` is told, from flags or their environment variables.
type Config struct {
	HTTPAddr           string
	SIPAddr            string
	SIPTLSAddr         string
	SIPTLSCert         string
	SIPTLSKey          string
	SIPTLSCA           string
	ReadyzRegistration bool
	RegisterRetry      time.Duration
	RTPPorts           string
	RTPMin, RTPMax     int
	PublicIP           string
	RedisURL           string
	AgencyKey          string
	SecretKey          string
	ProviderURL        string
	ProviderAPIKey     string
	ProviderTimeout    time.Duration
	// OpenAIURL, OpenAIAPIKey and OpenAIModel reach OpenAI Realtime; with
	// neither a URL nor a key, the built-in simulator.
	OpenAIURL, OpenAIAPIKey, OpenAIModel string
	OpenAIAPIKeyFile                     string
	// BotAllowInsecure lets agents' own bots be ws:// and at private addresses.
	BotAllowInsecure bool
	TrunkAllow       string
	TrunkPrefixes    []netip.Prefix
	TrunkUser        string
	TrunkPassword    string
	TrunkURI         string
	TrunkCountry     string
	TrunkCodecs      string
	TrunkSRTP        string
	TrunkRegister    bool
	TrunkRegistrars  string
	TrunkClientCert  string
	TrunkClientKey   string
	// DefaultTrunk is the trunk the --trunk-* flags describe (Validate builds it).
	DefaultTrunk       store.Trunk
	MaxCalls           int
	SIPSourceRate      int
	SIPGlobalRate      int
	SIPCallRate        int
	RTPLatching        string
	SIPTCPMaxConns     int
	SIPTCPPerSource    int
	SIPTCPReadTimeout  time.Duration
	SIPTCPIdleTimeout  time.Duration
	HTTPReadTimeout    time.Duration
	HTTPWriteTimeout   time.Duration
	HTTPIdleTimeout    time.Duration
	APIKeyConcurrency  int
	SecretKeyFile      string
	AgencyKeyFile      string
	TrunkPasswordFile  string
	ProviderAPIKeyFile string
	// SecretsOnCommandLine names the secret flags given as command-line arguments
	// (readable by anyone on the machine in /proc/<pid>/cmdline): serve warns.
	SecretsOnCommandLine []string
	RTPTimeout           time.Duration
	EchoNumber           string
	JitterMin, JitterMax time.Duration
	// Go's memory settings (applyMemory): --gc-percent (GOGCPercentGiven: set by
	// flag or CXCO_GC_PERCENT, which beat a GOGC in the environment) and
	// --memory-limit, parsed into MemoryLimitBytes (0: none of ours).
	GCPercent            int
	GCPercentGiven       bool
	MemoryLimit          string
	MemoryLimitBytes     int64
	PLC                  string             // --plc: how lost audio is concealed
	Concealment          jitter.Concealment // PLC, parsed
	TransferTimeout      time.Duration
	SIPT1                time.Duration
	WebhookAllowInsecure bool
	WebhookRetry         string
	WebhookRetries       []time.Duration
	WebhookDisableAfter  time.Duration
	WhatsAppVerifyDelay  time.Duration
	DrainTimeout         time.Duration
	PprofAddr            string
	NodeID               string
	NodeLease            time.Duration
	SpoolDir             string
	SpoolWait            time.Duration
	LogLevel             string
	LogFormat            string
	SIPTrace             bool
	SIPTraceKeep         time.Duration
}

// flagSet binds every flag to its environment variable: a flag given on the command
// line wins, then the environment, then the default.
type flagSet struct {
	*flag.FlagSet
	env   map[string]string // flag name -> env var
	given map[string]bool   // flags set by parse, on the command line or from their env var
}

func newFlagSet(name, usage string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: map[string]string{}}
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "%s\n\nFlags (each also read from its environment variable):\n", usage)
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		sort.Strings(names)
		for _, n := range names {
			f := fs.Lookup(n)
			def := ""
			if f.DefValue != "" && f.DefValue != "0s" && f.DefValue != "false" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(out, "  --%-24s %-30s %s%s\n", n, fs.env[n], f.Usage, def)
		}
	}
	return fs
}

func (fs *flagSet) str(p *string, name, env, def, usage string) {
	fs.StringVar(p, name, def, usage)
	fs.env[name] = env
}

func (fs *flagSet) dur(p *time.Duration, name, env string, def time.Duration, usage string) {
	*p = def
	fs.Var((*durationValue)(p), name, usage)
	fs.env[name] = env
}

// durationValue is a time.Duration flag whose error says what a duration looks
// like: flag's own says "parse error" for "600", a number without its unit.
type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want a duration such as 30s, 10m or 1h30m (a number needs its unit)")
	}
	*d = durationValue(v)
	return nil
}

func (fs *flagSet) integer(p *int, name, env string, def int, usage string) {
	fs.IntVar(p, name, def, usage)
	fs.env[name] = env
}

func (fs *flagSet) boolean(p *bool, name, env string, def bool, usage string) {
	fs.BoolVar(p, name, def, usage)
	fs.env[name] = env
}

// parse reads args, then fills every flag not given from its environment variable.
func (fs *flagSet) parse(args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := fs.env[f.Name]
		if given[f.Name] || env == "" {
			return
		}
		if v, ok := lookup(getenv, env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
			given[f.Name] = true
		}
	})
	fs.given = given
	return errors.Join(errs...)
}

func lookup(getenv func(string) string, k string) (string, bool) {
	if getenv == nil {
		return os.LookupEnv(k)
	}
	v := getenv(k)
	return v, v != ""
}

func serveFlags(c *Config) *flagSet {
	fs := newFlagSet("serve", "Usage: cxco serve [flags]\n\nRuns the gateway: the HTTP control plane, the SIP user agent and the media engine.")
	fs.str(&c.HTTPAddr, "http", "CXCO_HTTP_ADDR", ":8080", "control-plane listen address")
	fs.str(&c.SIPAddr, "sip", "CXCO_SIP_ADDR", ":5060", "SIP listen address, UDP and TCP; calls bind RTP on the same host (every address when the host is empty)")
	fs.str(&c.SIPTLSAddr, "sip-tls", "CXCO_SIP_TLS_ADDR", "", "SIP over TLS listen address, e.g. :5061 (off when empty; needs --sip-tls-cert and --sip-tls-key)")
	fs.str(&c.SIPTLSCert, "sip-tls-cert", "CXCO_SIP_TLS_CERT", "", "PEM certificate (chain) of the SIP TLS listener; read again on SIGHUP")
	fs.str(&c.SIPTLSKey, "sip-tls-key", "CXCO_SIP_TLS_KEY", "", "PEM private key of --sip-tls-cert; read again on SIGHUP")
	fs.str(&c.SIPTLSCA, "sip-tls-ca", "CXCO_SIP_TLS_CA", "", "PEM CA certificates that verify the peers of outbound SIP TLS (registrars, transfers); empty: the system's roots")
	fs.boolean(&c.ReadyzRegistration, "readyz-registration", "CXCO_READYZ_REGISTRATION", false, "/readyz fails while a trunk that registers is not registered")
	fs.dur(&c.RegisterRetry, "register-retry", "CXCO_REGISTER_RETRY", 5*time.Second, "first wait after a failed registration (doubling to 10m)")
	fs.str(&c.RTPPorts, "rtp-ports", "CXCO_RTP_PORTS", "20000-29999", "UDP port range for RTP")
	fs.str(&c.PublicIP, "public-ip", "CXCO_PUBLIC_IP", "", "address written into SDP and Contact (default: the --sip address when it names one, else the first non-loopback address, else 127.0.0.1)")
	fs.str(&c.RedisURL, "redis", "CXCO_REDIS_URL", "", "redis://, rediss://, redis+sentinel:// or redis+cluster:// URL (empty: embedded store, data lost on exit)")
	fs.str(&c.AgencyKey, "agency-key", "CXCO_AGENCY_KEY", "", "the agency key, prefix cxco_agcy_k_ (default: generated and printed once)")
	fs.str(&c.SecretKey, "secret-key", "CXCO_SECRET_KEY", "", "32-byte key, base64, that encrypts provider credentials (default: generated, with a warning)")
	fs.str(&c.ProviderURL, "provider-url", "CXCO_PROVIDER_URL", "", "base URL of the ElevenLabs-compatible provider (empty: built-in simulator)")
	fs.str(&c.ProviderAPIKey, "provider-api-key", "CXCO_PROVIDER_API_KEY", "", "platform xi-api-key, used for companies without their own elevenlabs credentials")
	fs.dur(&c.ProviderTimeout, "provider-timeout", "CXCO_PROVIDER_TIMEOUT", 3*time.Second, "how long an INVITE waits for the provider session before 503")
	fs.str(&c.OpenAIURL, "openai-url", "CXCO_OPENAI_URL", "", "base URL of OpenAI (https://api.openai.com when --openai-api-key is given; empty with no key: built-in simulator)")
	fs.str(&c.OpenAIAPIKey, "openai-api-key", "CXCO_OPENAI_API_KEY", "", "platform OpenAI key, used for companies without their own openai credentials")
	fs.str(&c.OpenAIModel, "openai-model", "CXCO_OPENAI_MODEL", "gpt-realtime", "OpenAI Realtime model of OpenAI agents' calls")
	fs.boolean(&c.BotAllowInsecure, "bot-allow-insecure", "CXCO_BOT_ALLOW_INSECURE", false, "allow agents' own bots at ws:// URLs and loopback/private addresses (development and tests only)")
	fs.str(&c.TrunkAllow, "trunk-allow", "CXCO_TRUNK_ALLOW", "127.0.0.0/8,::1/128", "CIDRs (or addresses) that may send SIP, the default trunk's; more trunks at /api/agency/trunks; other sources are dropped, with one warning per source a minute")
	fs.str(&c.TrunkUser, "trunk-user", "CXCO_TRUNK_USER", "", "digest user trunks must authenticate with (and we use towards the trunk)")
	fs.str(&c.TrunkPassword, "trunk-password", "CXCO_TRUNK_PASSWORD", "", "digest password for --trunk-user")
	fs.str(&c.TrunkURI, "trunk-uri", "CXCO_TRUNK_URI", "", "SIP URI of the default trunk: where bridged transfers, REFER targets given as numbers and registrations go, e.g. sip:trunk.example.com:5060;transport=tcp or sips:trunk.example.com")
	fs.str(&c.TrunkCountry, "trunk-country", "CXCO_TRUNK_COUNTRY", "", "ISO country of the default trunk's national numbers: 0… and 00… become E.164 (e.g. ZA: 0211234567 is +27211234567); empty: numbers are E.164")
	fs.str(&c.TrunkCodecs, "trunk-codecs", "CXCO_TRUNK_CODECS", "", "the default trunk's codecs in its order of preference, which wins over the caller's (PCMU, PCMA, G722, opus: e.g. G722,PCMU for HD voice); empty: PCMU and PCMA, in the caller's order")
	fs.str(&c.TrunkSRTP, "trunk-srtp", "CXCO_TRUNK_SRTP", "disabled", "the default trunk's SRTP policy: disabled, optional or required")
	fs.boolean(&c.TrunkRegister, "trunk-register", "CXCO_TRUNK_REGISTER", false, "register to the default trunk's registrar (--trunk-registrars, else --trunk-uri) as --trunk-user")
	fs.str(&c.TrunkRegistrars, "trunk-registrars", "CXCO_TRUNK_REGISTRARS", "", "registrar URIs of the default trunk, primary first, comma-separated (default: --trunk-uri)")
	fs.str(&c.TrunkClientCert, "trunk-client-cert", "CXCO_TRUNK_CLIENT_CERT", "", "PEM certificate presented to the default trunk over TLS when it asks for one (mutual TLS)")
	fs.str(&c.TrunkClientKey, "trunk-client-key", "CXCO_TRUNK_CLIENT_KEY", "", "PEM key of --trunk-client-cert")
	fs.integer(&c.MaxCalls, "max-calls", "CXCO_MAX_CALLS", 1000, "concurrent calls before INVITEs get 503")
	fs.integer(&c.SIPSourceRate, "sip-source-rate", "CXCO_SIP_SOURCE_RATE", 300, "SIP requests per second accepted from one source address, any method and transport (burst twice that; 0: no limit, and no --sip-global-rate); raise it behind a proxy")
	fs.integer(&c.SIPGlobalRate, "sip-global-rate", "CXCO_SIP_GLOBAL_RATE", 2000, "SIP requests per second from all sources together, shared fairly between the sources sending (0: no limit)")
	fs.integer(&c.SIPCallRate, "sip-call-rate", "CXCO_SIP_CALL_RATE", 200, "new INVITEs per second from all sources together, shared fairly between the sources sending INVITEs; more get 503 with Retry-After (0: no limit)")
	fs.str(&c.RTPLatching, "rtp-latching", "CXCO_RTP_LATCHING", store.LatchOff, "NAT latching of trunks that set none: off (RTP only from the address the SDP names) or signalling_source (also from the SIP source address, for trunks behind NAT)")
	fs.integer(&c.SIPTCPMaxConns, "sip-tcp-max-conns", "CXCO_SIP_TCP_MAX_CONNS", 0, "open SIP TCP connections at most (0: from the descriptor limit, what --max-calls leaves, at most 4096)")
	fs.integer(&c.SIPTCPPerSource, "sip-tcp-conns-per-source", "CXCO_SIP_TCP_CONNS_PER_SOURCE", 64, "open SIP TCP connections from one address at most")
	fs.dur(&c.SIPTCPReadTimeout, "sip-tcp-read-timeout", "CXCO_SIP_TCP_READ_TIMEOUT", 5*time.Second, "a SIP TCP connection's first message, and each message once begun, must arrive whole within this")
	fs.dur(&c.SIPTCPIdleTimeout, "sip-tcp-idle-timeout", "CXCO_SIP_TCP_IDLE_TIMEOUT", 10*time.Minute, "close a SIP TCP connection silent this long (CRLF keep-alives count)")
	fs.dur(&c.HTTPReadTimeout, "http-read-timeout", "CXCO_HTTP_READ_TIMEOUT", 30*time.Second, "an HTTP request, body included, must arrive within this (a slow body gets 408)")
	fs.dur(&c.HTTPWriteTimeout, "http-write-timeout", "CXCO_HTTP_WRITE_TIMEOUT", 60*time.Second, "writing an API answer may take this long")
	fs.dur(&c.HTTPIdleTimeout, "http-idle-timeout", "CXCO_HTTP_IDLE_TIMEOUT", 2*time.Minute, "close an idle keep-alive HTTP connection after this")
	fs.integer(&c.APIKeyConcurrency, "api-key-concurrency", "CXCO_API_KEY_CONCURRENCY", 32, "API requests one key may have in progress at once; more get 429")
	fs.str(&c.SecretKeyFile, "secret-key-file", "CXCO_SECRET_KEY_FILE", "", "read --secret-key from this file (keeps it out of the process's command line)")
	fs.str(&c.AgencyKeyFile, "agency-key-file", "CXCO_AGENCY_KEY_FILE", "", "read --agency-key from this file")
	fs.str(&c.TrunkPasswordFile, "trunk-password-file", "CXCO_TRUNK_PASSWORD_FILE", "", "read --trunk-password from this file")
	fs.str(&c.ProviderAPIKeyFile, "provider-api-key-file", "CXCO_PROVIDER_API_KEY_FILE", "", "read --provider-api-key from this file")
	fs.str(&c.OpenAIAPIKeyFile, "openai-api-key-file", "CXCO_OPENAI_API_KEY_FILE", "", "read --openai-api-key from this file")
	fs.dur(&c.RTPTimeout, "rtp-timeout", "CXCO_RTP_TIMEOUT", 30*time.Second, "end a call after this long without RTP (hold excepted)")
	fs.str(&c.EchoNumber, "echo-number", "CXCO_ECHO_NUMBER", "", "a number that answers every call with the caller's own audio (echo test line)")
	fs.dur(&c.JitterMin, "jitter-min", "CXCO_JITTER_MIN", 20*time.Millisecond, "jitter buffer minimum depth")
	fs.dur(&c.JitterMax, "jitter-max", "CXCO_JITTER_MAX", 120*time.Millisecond, "jitter buffer maximum depth")
	fs.dur(&c.SIPT1, "sip-t1", "CXCO_SIP_T1", 500*time.Millisecond, "RFC 3261 T1, the SIP round-trip estimate every SIP timer follows (an unacknowledged 200 ends the call after 64*T1); smaller only on private networks")
	fs.integer(&c.GCPercent, "gc-percent", "CXCO_GC_PERCENT", 25, "Go's GC target (GOGC): the heap may grow this many percent over the live heap before a collection. Go's default is 100; 25 keeps about a third less memory per call for about 1% of the gateway's CPU. A GOGC in the environment wins over the default; -1 turns the GC off")
	fs.str(&c.MemoryLimit, "memory-limit", "CXCO_MEMORY_LIMIT", "", "soft limit of the process's Go memory, e.g. 900MiB or 3GiB (Go's GOMEMLIMIT; B, KiB, MiB, GiB, TiB): near it the GC collects harder instead of the process outgrowing its container; set it to about 90% of the memory the node may use. Empty: GOMEMLIMIT's, or none")
	fs.str(&c.PLC, "plc", "CXCO_PLC", "pitch", "how the jitter buffer conceals lost audio: pitch (ITU-T G.711 Appendix I pitch repetition), fade (repeat the last frame, fading out) or silence")
	fs.dur(&c.TransferTimeout, "transfer-timeout", "CXCO_TRANSFER_TIMEOUT", 30*time.Second, "how long a REFER transfer may take to report success")
	fs.boolean(&c.WebhookAllowInsecure, "webhook-allow-insecure", "CXCO_WEBHOOK_ALLOW_INSECURE", false, "allow http:// and loopback/private webhook targets (development and tests only)")
	fs.str(&c.WebhookRetry, "webhook-retry", "CXCO_WEBHOOK_RETRY", "10s,30s,90s,270s,810s", "retry schedule after a failed webhook delivery")
	fs.dur(&c.WebhookDisableAfter, "webhook-disable-after", "CXCO_WEBHOOK_DISABLE_AFTER", 24*time.Hour, "disable a webhook that has failed for this long")
	fs.dur(&c.WhatsAppVerifyDelay, "whatsapp-verify-delay", "CXCO_WHATSAPP_VERIFY_DELAY", 5*time.Second, "delay of the built-in WhatsApp verifier")
	fs.dur(&c.DrainTimeout, "drain-timeout", "CXCO_DRAIN_TIMEOUT", 10*time.Minute, "on SIGTERM, how long live calls may finish before they are ended")
	fs.str(&c.PprofAddr, "pprof", "CXCO_PPROF_ADDR", "", "serve net/http/pprof on this address (off when empty)")
	fs.str(&c.NodeID, "node-id", "CXCO_NODE_ID", "", "this node's name among several sharing one Redis (default: hostname and pid); keep it across restarts so a restart closes what a crash left open")
	fs.dur(&c.NodeLease, "node-lease", "CXCO_NODE_LEASE", store.DefaultNodeLease, "a node that stops renewing its lease this long is lost: the other nodes close its calls in progress")
	fs.dur(&c.SpoolWait, "spool-wait", "CXCO_SPOOL_WAIT", 10*time.Second, "at shutdown, how long writes wait for Redis before they are saved to the spool directory")
	fs.str(&c.SpoolDir, "spool-dir", "CXCO_SPOOL_DIR", "", "where writes that Redis could not take before shutdown are saved and replayed at the next start (default: the user cache directory, cxco/spool)")
	fs.boolean(&c.SIPTrace, "sip-trace", "CXCO_SIP_TRACE", false, "log every SIP message of every call whole, with the call's ids, secrets redacted (debug level does too)")
	fs.dur(&c.SIPTraceKeep, "sip-trace-keep", "CXCO_SIP_TRACE_KEEP", 72*time.Hour, "how long a conversation's SIP ladder (GET /api/conversations/{id}/sip-trace) is kept; 0 keeps none")
	fs.str(&c.LogLevel, "log-level", "CXCO_LOG_LEVEL", "info", "debug, info, warn or error")
	fs.str(&c.LogFormat, "log-format", "CXCO_LOG_FORMAT", "json", "json or text")
	return fs
}

// parseBytes reads a size as GOMEMLIMIT writes it: a whole number with an optional
// unit B, KiB, MiB, GiB or TiB.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, "B"
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	shift := map[string]uint{"B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}
	sh, ok := shift[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n <= 0 || n > math.MaxInt64>>sh {
		return 0, errors.New("want a size such as 900MiB or 3GiB (B, KiB, MiB, GiB, TiB)")
	}
	return n << sh, nil
}

// secretFlags carry secrets: given on the command line they are readable by any
// user of the machine in /proc/<pid>/cmdline, so serve warns and points to the
// environment variable or the -file flag.
var secretFlags = []string{"agency-key", "secret-key", "trunk-password", "provider-api-key", "openai-api-key"}

// secretsGiven lists the secret flags fs saw on the command line.
func secretsGiven(fs *flagSet) []string {
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(secretFlags, f.Name) {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

// Validate checks the config and fills the derived fields (secrets from their
// files among them).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, sf := range []struct {
		name, file string
		dst        *string
	}{{"secret-key", c.SecretKeyFile, &c.SecretKey}, {"agency-key", c.AgencyKeyFile, &c.AgencyKey},
		{"trunk-password", c.TrunkPasswordFile, &c.TrunkPassword}, {"provider-api-key", c.ProviderAPIKeyFile, &c.ProviderAPIKey},
		{"openai-api-key", c.OpenAIAPIKeyFile, &c.OpenAIAPIKey}} {
		if sf.file == "" {
			continue
		}
		if *sf.dst != "" {
			bad("--%s and --%s-file are both given: keep one", sf.name, sf.name)
			continue
		}
		b, err := os.ReadFile(sf.file)
		if err != nil {
			bad("--%s-file: %v", sf.name, err)
			continue
		}
		if *sf.dst = strings.TrimSpace(string(b)); *sf.dst == "" {
			bad("--%s-file %s is empty", sf.name, sf.file)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("--http %q: %v", c.HTTPAddr, err)
	}
	if _, _, err := net.SplitHostPort(c.SIPAddr); err != nil {
		bad("--sip %q: %v", c.SIPAddr, err)
	}
	if c.SIPTLSAddr != "" {
		if _, _, err := net.SplitHostPort(c.SIPTLSAddr); err != nil {
			bad("--sip-tls %q: %v", c.SIPTLSAddr, err)
		}
		if c.SIPTLSCert == "" || c.SIPTLSKey == "" {
			bad("--sip-tls needs --sip-tls-cert and --sip-tls-key")
		}
	}
	if (c.SIPTLSCert == "") != (c.SIPTLSKey == "") {
		bad("--sip-tls-cert and --sip-tls-key go together")
	}
	if c.RegisterRetry <= 0 {
		bad("--register-retry must be positive")
	}
	lo, hi, ok := strings.Cut(c.RTPPorts, "-")
	c.RTPMin, _ = strconv.Atoi(strings.TrimSpace(lo))
	c.RTPMax, _ = strconv.Atoi(strings.TrimSpace(hi))
	if !ok || c.RTPMin < 1024 || c.RTPMax > 65535 || c.RTPMax-c.RTPMin < 3 {
		bad("--rtp-ports %q: want a range like 20000-29999 within 1024-65535 holding at least two port pairs", c.RTPPorts)
	}
	if c.PublicIP != "" {
		if _, err := netip.ParseAddr(c.PublicIP); err != nil {
			bad("--public-ip %q: not an IP address", c.PublicIP)
		}
	}
	if c.RedisURL != "" {
		if _, err := store.NewClient(c.RedisURL); err != nil {
			bad("--redis: %v", err)
		}
	}
	if c.AgencyKey != "" && (!strings.HasPrefix(c.AgencyKey, store.PrefixAgencyKey) || len(c.AgencyKey) < len(store.PrefixAgencyKey)+22) {
		bad("--agency-key: must start with %s and carry at least 22 random characters after it", store.PrefixAgencyKey)
	}
	if c.SecretKey != "" {
		if _, err := store.NewSealer(c.SecretKey); err != nil {
			bad("--secret-key: %v", err)
		}
	}
	if c.ProviderURL != "" && !strings.HasPrefix(c.ProviderURL, "http://") && !strings.HasPrefix(c.ProviderURL, "https://") {
		bad("--provider-url %q: want http:// or https://", c.ProviderURL)
	}
	if c.OpenAIURL != "" && !strings.HasPrefix(c.OpenAIURL, "http://") && !strings.HasPrefix(c.OpenAIURL, "https://") {
		bad("--openai-url %q: want http:// or https://", c.OpenAIURL)
	}
	c.TrunkPrefixes = nil
	for _, s := range splitComma(c.TrunkAllow) {
		p, err := store.ParseCIDR(s)
		if err != nil {
			bad("--trunk-allow: %q is not a CIDR", s)
			continue
		}
		c.TrunkPrefixes = append(c.TrunkPrefixes, p)
	}
	if (c.TrunkUser == "") != (c.TrunkPassword == "") {
		bad("--trunk-user and --trunk-password go together")
	}
	if c.TrunkURI != "" {
		if _, err := store.ParseTrunkURI(c.TrunkURI); err != nil {
			bad("--trunk-uri: %v", err)
		}
	}
	c.DefaultTrunk = store.Trunk{Name: "default", Allow: splitComma(c.TrunkAllow), URI: c.TrunkURI, Username: c.TrunkUser,
		InboundAuth: c.TrunkUser != "", SRTP: c.TrunkSRTP, Codecs: splitComma(c.TrunkCodecs),
		Numbers: store.NumberRule{Country: c.TrunkCountry}, TLS: store.TrunkTLS{ClientCertFile: c.TrunkClientCert, ClientKeyFile: c.TrunkClientKey},
		Registration: store.TrunkRegistration{Enabled: c.TrunkRegister, Registrars: splitComma(c.TrunkRegistrars)}}
	if err := c.DefaultTrunk.Validate(); err != nil {
		var ie *store.InvalidError
		if errors.As(err, &ie) {
			for _, d := range strings.Split(ie.Detail, "; ") {
				// --trunk-allow and --trunk-uri are checked above, in their own words.
				if !strings.HasPrefix(d, "allow:") && !strings.HasPrefix(d, "uri:") {
					bad("default trunk (--trunk-*): %s", trunkFlagNames.Replace(d))
				}
			}
		}
	}
	if c.MaxCalls < 1 {
		bad("--max-calls must be at least 1")
	}
	for name, v := range map[string]int{"--sip-source-rate": c.SIPSourceRate, "--sip-global-rate": c.SIPGlobalRate,
		"--sip-call-rate": c.SIPCallRate, "--sip-tcp-max-conns": c.SIPTCPMaxConns} {
		if v < 0 {
			bad("%s must not be negative", name)
		}
	}
	if c.RTPLatching != store.LatchOff && c.RTPLatching != store.LatchSource {
		bad("--rtp-latching %q: want off or signalling_source", c.RTPLatching)
	}
	if c.SIPTCPPerSource < 1 || c.APIKeyConcurrency < 1 {
		bad("--sip-tcp-conns-per-source and --api-key-concurrency must be at least 1")
	}
	if c.SIPT1 < 10*time.Millisecond || c.SIPT1 > 10*time.Second {
		bad("--sip-t1 %s: want 10ms to 10s", c.SIPT1)
	}
	if c.NodeLease < time.Second {
		bad("--node-lease %s: want at least 1s", c.NodeLease)
	}
	positive := map[string]time.Duration{"--provider-timeout": c.ProviderTimeout, "--rtp-timeout": c.RTPTimeout,
		"--transfer-timeout": c.TransferTimeout, "--drain-timeout": c.DrainTimeout, "--spool-wait": c.SpoolWait, "--webhook-disable-after": c.WebhookDisableAfter,
		"--sip-tcp-read-timeout": c.SIPTCPReadTimeout, "--sip-tcp-idle-timeout": c.SIPTCPIdleTimeout,
		"--http-read-timeout": c.HTTPReadTimeout, "--http-write-timeout": c.HTTPWriteTimeout, "--http-idle-timeout": c.HTTPIdleTimeout}
	for name, d := range positive {
		if d <= 0 {
			bad("%s must be positive", name)
		}
	}
	if c.SIPTraceKeep < 0 {
		bad("--sip-trace-keep must not be negative")
	}
	if c.WhatsAppVerifyDelay < 0 {
		bad("--whatsapp-verify-delay must not be negative")
	}
	if c.JitterMin < 0 || c.JitterMax < c.JitterMin || c.JitterMax > 2*time.Second {
		bad("--jitter-min/--jitter-max: want 0 <= min <= max <= 2s")
	}
	if c.GCPercent < -1 || c.GCPercent == 0 {
		bad("--gc-percent %d: want a positive percentage (Go's default is 100), or -1 for no GC", c.GCPercent)
	}
	c.MemoryLimitBytes = 0
	if c.MemoryLimit != "" {
		n, err := parseBytes(c.MemoryLimit)
		switch {
		case err != nil:
			bad("--memory-limit %q: %v", c.MemoryLimit, err)
		case n < 64<<20:
			bad("--memory-limit %q: want at least 64MiB (below that the GC would run all the time)", c.MemoryLimit)
		default:
			c.MemoryLimitBytes = n
		}
	}
	if cc, err := jitter.ParseConcealment(c.PLC); err != nil {
		bad("--plc %q: want pitch, fade or silence", c.PLC)
	} else {
		c.Concealment = cc
	}
	c.WebhookRetries = nil
	for _, s := range strings.Split(c.WebhookRetry, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d <= 0 {
			bad("--webhook-retry: %q is not a positive duration", s)
			continue
		}
		c.WebhookRetries = append(c.WebhookRetries, d)
	}
	if c.EchoNumber != "" && !strings.HasPrefix(c.EchoNumber, "+") {
		c.EchoNumber = "+" + c.EchoNumber
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		bad("--log-format %q: want json or text", c.LogFormat)
	}
	if c.NodeID == "" {
		h, _ := os.Hostname()
		c.NodeID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.SpoolDir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			c.SpoolDir = filepath.Join(d, "cxco", "spool")
		} else {
			c.SpoolDir = filepath.Join(os.TempDir(), "cxco-spool")
		}
	}
	return errors.Join(errs...)
}

// trunkFlagNames names the flags behind the default trunk's fields in its errors.
var trunkFlagNames = strings.NewReplacer(
	"registration: needs registrars or the trunk's uri", "--trunk-register: needs --trunk-registrars or --trunk-uri",
	"registration: needs a user (registration.user or username)", "--trunk-register: needs --trunk-user (and --trunk-password)",
	"srtp:", "--trunk-srtp:", "codecs:", "--trunk-codecs:", "numbers.country:", "--trunk-country:",
	"registration:", "--trunk-register:", "registration.registrars:", "--trunk-registrars:", "tls:", "--trunk-client-cert/--trunk-client-key:")

// defaultPublicIP is the first non-loopback address of the machine, else 127.0.0.1.
func defaultPublicIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil && !ipn.IP.IsLinkLocalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
