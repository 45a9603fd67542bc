package main

import (
	"bytes"
	"flag"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/media/jitter"
	"github.com/cxco/gateway/store"
)

// parseServe parses `cxco serve` arguments with env as the whole environment.
func parseServe(args []string, env map[string]string) (*Config, error) {
	var c Config
	fs := serveFlags(&c)
	fs.SetOutput(io.Discard)
	if err := fs.parse(args, func(k string) string { return env[k] }); err != nil {
		return &c, err
	}
	return &c, c.Validate()
}

var (
	testAgencyKey  = store.PrefixAgencyKey + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
	testAgencyKey2 = store.PrefixAgencyKey + "ZyXwVuTsRqPoNmLkJiHgFeDcBa987654"
	testSecret     = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	testSecret2    = store.GenerateSecretKey()
)

// TestServeDefaults: with nothing set, the defaults of DESIGN.md's process contract.
func TestServeDefaults(t *testing.T) {
	c, err := parseServe(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"HTTPAddr": ":8080", "SIPAddr": ":5060", "RTPPorts": "20000-29999", "RTPMin": 20000, "RTPMax": 29999, "PublicIP": "",
		"RedisURL": "", "AgencyKey": "", "SecretKey": "", "ProviderURL": "", "TrunkAllow": "127.0.0.0/8,::1/128",
		"TrunkPrefixes":        []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		"WebhookAllowInsecure": false, "WebhookRetry": "10s,30s,90s,270s,810s",
		"WebhookRetries":      []time.Duration{10 * time.Second, 30 * time.Second, 90 * time.Second, 270 * time.Second, 810 * time.Second},
		"WhatsAppVerifyDelay": 5 * time.Second,
		"GCPercent":           25, "GCPercentGiven": false, "MemoryLimit": "", "MemoryLimitBytes": int64(0),
	}
	v := reflect.ValueOf(*c)
	for field, w := range want {
		if got := v.FieldByName(field).Interface(); !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", field, got, w)
		}
	}
	if c.NodeID == "" {
		t.Error("no default node id")
	}
}

// TestServeFlagsAndEnv: each flag is read from its environment variable, and a flag
// on the command line beats the environment.
func TestServeFlagsAndEnv(t *testing.T) {
	cases := []struct {
		flag, env         string
		envValue, flagVal string
		field             string // Config field to check
		fromEnv, fromFlag any    // its value after parsing
	}{
		{"http", "CXCO_HTTP_ADDR", "127.0.0.1:9000", "[::1]:9001", "HTTPAddr", "127.0.0.1:9000", "[::1]:9001"},
		{"sip", "CXCO_SIP_ADDR", "0.0.0.0:5070", "127.0.0.1:5080", "SIPAddr", "0.0.0.0:5070", "127.0.0.1:5080"},
		{"rtp-ports", "CXCO_RTP_PORTS", "30000-30999", "40000-40099", "RTPMin", 30000, 40000},
		{"rtp-ports", "CXCO_RTP_PORTS", "30000-30999", "40000-40099", "RTPMax", 30999, 40099},
		{"public-ip", "CXCO_PUBLIC_IP", "203.0.113.7", "2001:db8::7", "PublicIP", "203.0.113.7", "2001:db8::7"},
		{"redis", "CXCO_REDIS_URL", "redis://10.0.0.5:6379/2", "redis+cluster://10.0.0.6:7000?addr=10.0.0.7:7000", "RedisURL",
			"redis://10.0.0.5:6379/2", "redis+cluster://10.0.0.6:7000?addr=10.0.0.7:7000"},
		{"agency-key", "CXCO_AGENCY_KEY", testAgencyKey, testAgencyKey2, "AgencyKey", testAgencyKey, testAgencyKey2},
		{"secret-key", "CXCO_SECRET_KEY", testSecret, testSecret2, "SecretKey", testSecret, testSecret2},
		{"provider-url", "CXCO_PROVIDER_URL", "https://api.elevenlabs.io", "http://127.0.0.1:8090", "ProviderURL", "https://api.elevenlabs.io", "http://127.0.0.1:8090"},
		{"provider-api-key", "CXCO_PROVIDER_API_KEY", "xi-env", "xi-flag", "ProviderAPIKey", "xi-env", "xi-flag"},
		{"provider-timeout", "CXCO_PROVIDER_TIMEOUT", "5s", "750ms", "ProviderTimeout", 5 * time.Second, 750 * time.Millisecond},
		{"trunk-allow", "CXCO_TRUNK_ALLOW", "10.0.0.0/8, 192.0.2.1", "2001:db8::/32", "TrunkPrefixes",
			[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}, []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}},
		{"trunk-uri", "CXCO_TRUNK_URI", "sip:trunk.example.com:5060", "sips:trunk.example.net", "TrunkURI", "sip:trunk.example.com:5060", "sips:trunk.example.net"},
		{"max-calls", "CXCO_MAX_CALLS", "50", "7", "MaxCalls", 50, 7},
		{"rtp-timeout", "CXCO_RTP_TIMEOUT", "10s", "1m", "RTPTimeout", 10 * time.Second, time.Minute},
		{"echo-number", "CXCO_ECHO_NUMBER", "27210000000", "+15550000000", "EchoNumber", "+27210000000", "+15550000000"},
		{"jitter-min", "CXCO_JITTER_MIN", "40ms", "0s", "JitterMin", 40 * time.Millisecond, time.Duration(0)},
		{"jitter-max", "CXCO_JITTER_MAX", "200ms", "60ms", "JitterMax", 200 * time.Millisecond, 60 * time.Millisecond},
		{"plc", "CXCO_PLC", "fade", "silence", "Concealment", jitter.ConcealFade, jitter.ConcealSilence},
		{"gc-percent", "CXCO_GC_PERCENT", "40", "100", "GCPercent", 40, 100},
		{"memory-limit", "CXCO_MEMORY_LIMIT", "900MiB", "3GiB", "MemoryLimitBytes", int64(900 << 20), int64(3 << 30)},
		{"memory-limit", "CXCO_MEMORY_LIMIT", "1073741824", " 128 MiB ", "MemoryLimitBytes", int64(1 << 30), int64(128 << 20)},
		{"transfer-timeout", "CXCO_TRANSFER_TIMEOUT", "45s", "5s", "TransferTimeout", 45 * time.Second, 5 * time.Second},
		{"webhook-allow-insecure", "CXCO_WEBHOOK_ALLOW_INSECURE", "true", "false", "WebhookAllowInsecure", true, false},
		{"webhook-retry", "CXCO_WEBHOOK_RETRY", "1s, 2s", "500ms", "WebhookRetries", []time.Duration{time.Second, 2 * time.Second}, []time.Duration{500 * time.Millisecond}},
		{"webhook-disable-after", "CXCO_WEBHOOK_DISABLE_AFTER", "1h", "90m", "WebhookDisableAfter", time.Hour, 90 * time.Minute},
		{"whatsapp-verify-delay", "CXCO_WHATSAPP_VERIFY_DELAY", "250ms", "0s", "WhatsAppVerifyDelay", 250 * time.Millisecond, time.Duration(0)},
		{"drain-timeout", "CXCO_DRAIN_TIMEOUT", "1m", "30s", "DrainTimeout", time.Minute, 30 * time.Second},
		{"pprof", "CXCO_PPROF_ADDR", "127.0.0.1:6060", "127.0.0.1:6061", "PprofAddr", "127.0.0.1:6060", "127.0.0.1:6061"},
		{"node-id", "CXCO_NODE_ID", "node-a", "node-b", "NodeID", "node-a", "node-b"},
		{"node-lease", "CXCO_NODE_LEASE", "20s", "3s", "NodeLease", 20 * time.Second, 3 * time.Second},
		{"spool-dir", "CXCO_SPOOL_DIR", "/var/lib/cxco/spool", "/tmp/spool", "SpoolDir", "/var/lib/cxco/spool", "/tmp/spool"},
		{"spool-wait", "CXCO_SPOOL_WAIT", "2s", "30s", "SpoolWait", 2 * time.Second, 30 * time.Second},
		{"log-level", "CXCO_LOG_LEVEL", "debug", "error", "LogLevel", "debug", "error"},
		{"log-format", "CXCO_LOG_FORMAT", "text", "json", "LogFormat", "text", "json"},
	}
	for _, c := range cases {
		t.Run(c.flag+"/"+c.field, func(t *testing.T) {
			field := func(cfg *Config) any { return reflect.ValueOf(*cfg).FieldByName(c.field).Interface() }
			cfg, err := parseServe(nil, map[string]string{c.env: c.envValue})
			if err != nil {
				t.Fatalf("%s=%q: %v", c.env, c.envValue, err)
			}
			if got := field(cfg); !reflect.DeepEqual(got, c.fromEnv) {
				t.Errorf("from %s: %s = %#v, want %#v", c.env, c.field, got, c.fromEnv)
			}
			forms := [][]string{{"--" + c.flag + "=" + c.flagVal}, {"-" + c.flag + "=" + c.flagVal}}
			if _, isBool := c.fromFlag.(bool); !isBool { // a boolean flag takes its value only after =
				forms = append(forms, []string{"--" + c.flag, c.flagVal})
			}
			for _, form := range forms {
				cfg, err = parseServe(form, map[string]string{c.env: c.envValue})
				if err != nil {
					t.Fatalf("%v over %s: %v", form, c.env, err)
				}
				if got := field(cfg); !reflect.DeepEqual(got, c.fromFlag) {
					t.Errorf("%v with %s set: %s = %#v, want the flag's %#v", form, c.env, c.field, got, c.fromFlag)
				}
			}
		})
	}
	// The trunk credentials go together.
	cfg, err := parseServe([]string{"--trunk-user", "flaguser"}, map[string]string{"CXCO_TRUNK_USER": "envuser", "CXCO_TRUNK_PASSWORD": "envpass"})
	if err != nil || cfg.TrunkUser != "flaguser" || cfg.TrunkPassword != "envpass" {
		t.Fatalf("trunk user/password: %q %q %v", cfg.TrunkUser, cfg.TrunkPassword, err)
	}

	// Every flag has its own CXCO_ environment variable.
	var c Config
	fs := serveFlags(&c)
	seen := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		env := fs.env[f.Name]
		if !strings.HasPrefix(env, "CXCO_") {
			t.Errorf("--%s has no CXCO_ environment variable (%q)", f.Name, env)
		}
		if other, dup := seen[env]; dup {
			t.Errorf("--%s and --%s share %s", f.Name, other, env)
		}
		seen[env] = f.Name
	})
}

// TestServeInvalid: each invalid value, from a flag or the environment, is refused
// with an error that names the flag (or the variable) and what is wrong.
func TestServeInvalid(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string // all in the error
	}{
		{"http without port", []string{"--http", "localhost"}, nil, []string{"--http", "localhost"}},
		{"gc percent zero", []string{"--gc-percent", "0"}, nil, []string{"--gc-percent"}},
		{"gc percent below -1", nil, map[string]string{"CXCO_GC_PERCENT": "-5"}, []string{"--gc-percent"}},
		{"memory limit unit", []string{"--memory-limit", "900MB"}, nil, []string{"--memory-limit", "900MB", "MiB"}},
		{"memory limit tiny", nil, map[string]string{"CXCO_MEMORY_LIMIT": "1MiB"}, []string{"--memory-limit", "64MiB"}},
		{"memory limit negative", []string{"--memory-limit", "-1GiB"}, nil, []string{"--memory-limit"}},
		{"http from env", nil, map[string]string{"CXCO_HTTP_ADDR": "8080"}, []string{"--http", "8080"}},
		{"sip without port", []string{"--sip", "sip.example.com"}, nil, []string{"--sip"}},
		{"rtp ports reversed", []string{"--rtp-ports", "30000-20000"}, nil, []string{"--rtp-ports", "30000-20000"}},
		{"rtp ports privileged", []string{"--rtp-ports", "100-2000"}, nil, []string{"--rtp-ports"}},
		{"rtp ports one pair", []string{"--rtp-ports", "20000-20001"}, nil, []string{"--rtp-ports"}},
		{"rtp ports not a range", nil, map[string]string{"CXCO_RTP_PORTS": "20000"}, []string{"--rtp-ports"}},
		{"rtp ports above 65535", []string{"--rtp-ports", "60000-70000"}, nil, []string{"--rtp-ports"}},
		{"public ip a name", []string{"--public-ip", "gw.example.com"}, nil, []string{"--public-ip", "gw.example.com"}},
		{"redis scheme", []string{"--redis", "http://10.0.0.5:6379"}, nil, []string{"--redis", "http"}},
		{"redis no scheme", nil, map[string]string{"CXCO_REDIS_URL": "10.0.0.5:6379"}, []string{"--redis"}},
		{"redis sentinel without master", []string{"--redis", "redis+sentinel://10.0.0.5:26379"}, nil, []string{"--redis", "master_name"}},
		{"agency key prefix", []string{"--agency-key", "cxco_comp_k_AbCdEfGhIjKlMnOpQrStUvWxYz012345"}, nil, []string{"--agency-key", "cxco_agcy_k_"}},
		{"agency key short", nil, map[string]string{"CXCO_AGENCY_KEY": "cxco_agcy_k_short"}, []string{"--agency-key"}},
		{"secret key short", []string{"--secret-key", "c2hvcnQ="}, nil, []string{"--secret-key", "32 bytes"}},
		{"secret key not base64", nil, map[string]string{"CXCO_SECRET_KEY": "not base64 at all!"}, []string{"--secret-key"}},
		{"provider url scheme", []string{"--provider-url", "ftp://api.example.com"}, nil, []string{"--provider-url", "ftp://"}},
		{"provider timeout zero", []string{"--provider-timeout", "0s"}, nil, []string{"--provider-timeout", "positive"}},
		{"provider timeout not a duration", nil, map[string]string{"CXCO_PROVIDER_TIMEOUT": "soon"}, []string{"CXCO_PROVIDER_TIMEOUT", "soon"}},
		{"provider timeout flag not a duration", []string{"--provider-timeout", "3"}, nil, []string{"provider-timeout"}},
		{"trunk allow garbage", []string{"--trunk-allow", "10.0.0.0/8,not-a-cidr"}, nil, []string{"--trunk-allow", "not-a-cidr"}},
		{"trunk allow bad prefix", nil, map[string]string{"CXCO_TRUNK_ALLOW": "10.0.0.0/33"}, []string{"--trunk-allow"}},
		{"trunk user without password", []string{"--trunk-user", "u"}, nil, []string{"--trunk-user", "--trunk-password"}},
		{"trunk password without user", nil, map[string]string{"CXCO_TRUNK_PASSWORD": "p"}, []string{"--trunk-password"}},
		{"trunk uri scheme", []string{"--trunk-uri", "http://trunk.example.com"}, nil, []string{"--trunk-uri", "sip:"}},
		{"max calls zero", []string{"--max-calls", "0"}, nil, []string{"--max-calls"}},
		{"max calls not a number", nil, map[string]string{"CXCO_MAX_CALLS": "many"}, []string{"CXCO_MAX_CALLS", "many"}},
		{"rtp timeout negative", []string{"--rtp-timeout", "-1s"}, nil, []string{"--rtp-timeout", "positive"}},
		{"transfer timeout zero", nil, map[string]string{"CXCO_TRANSFER_TIMEOUT": "0s"}, []string{"--transfer-timeout"}},
		{"drain timeout zero", []string{"--drain-timeout", "0s"}, nil, []string{"--drain-timeout"}},
		{"node lease too short", []string{"--node-lease", "500ms"}, nil, []string{"--node-lease", "1s"}},
		{"spool wait zero", nil, map[string]string{"CXCO_SPOOL_WAIT": "0s"}, []string{"--spool-wait"}},
		{"cluster refresh interval", []string{"--redis", "redis+cluster://10.0.0.6:7000?state_reload_interval=never"}, nil, []string{"--redis", "state_reload_interval"}},
		{"jitter max below min", []string{"--jitter-min", "100ms", "--jitter-max", "50ms"}, nil, []string{"--jitter-min", "--jitter-max"}},
		{"unknown concealment", []string{"--plc", "g711"}, nil, []string{"--plc", "pitch, fade or silence"}},
		{"jitter max above 2s", nil, map[string]string{"CXCO_JITTER_MAX": "3s"}, []string{"--jitter-max"}},
		{"insecure not a bool", nil, map[string]string{"CXCO_WEBHOOK_ALLOW_INSECURE": "maybe"}, []string{"CXCO_WEBHOOK_ALLOW_INSECURE", "maybe"}},
		{"webhook retry garbage", []string{"--webhook-retry", "10s,later"}, nil, []string{"--webhook-retry", "later"}},
		{"webhook retry zero", nil, map[string]string{"CXCO_WEBHOOK_RETRY": "0s"}, []string{"--webhook-retry"}},
		{"webhook disable after zero", []string{"--webhook-disable-after", "0s"}, nil, []string{"--webhook-disable-after"}},
		{"whatsapp delay negative", []string{"--whatsapp-verify-delay", "-5s"}, nil, []string{"--whatsapp-verify-delay"}},
		{"whatsapp delay not a duration", nil, map[string]string{"CXCO_WHATSAPP_VERIFY_DELAY": "5"}, []string{"CXCO_WHATSAPP_VERIFY_DELAY"}},
		{"log level", []string{"--log-level", "loud"}, nil, []string{"--log-level", "loud"}},
		{"log format", nil, map[string]string{"CXCO_LOG_FORMAT": "xml"}, []string{"--log-format", "xml"}},
		{"unknown flag", []string{"--colour", "blue"}, nil, []string{"colour"}},
		{"stray argument", []string{"now"}, nil, []string{"unexpected argument", "now"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseServe(c.args, c.env)
			if err == nil {
				t.Fatalf("accepted %v %v", c.args, c.env)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// Several problems are all reported at once.
	_, err := parseServe([]string{"--http", "x", "--log-level", "loud"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--http") || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("joined errors: %v", err)
	}
}

// TestCommands: `cxco serve --help` lists every flag with its variable, `cxco version`
// prints the version, and bad invocations exit non-zero with a message.
func TestCommands(t *testing.T) {
	noEnv := func(string) string { return "" }
	cases := []struct {
		name       string
		args       []string
		code       int
		stdout     []string
		stderr     []string
		noServeRun bool
	}{
		{"serve --help", []string{"serve", "--help"}, 0, nil, []string{"Usage: cxco serve", "--http", "CXCO_HTTP_ADDR", "--whatsapp-verify-delay",
			"CXCO_WHATSAPP_VERIFY_DELAY", "(default :8080)"}, true},
		{"serve -h", []string{"serve", "-h"}, 0, nil, []string{"Usage: cxco serve"}, true},
		{"version", []string{"version"}, 0, []string{"cxco " + version}, nil, true},
		{"--version", []string{"--version"}, 0, []string{"cxco "}, nil, true},
		{"version --help", []string{"version", "--help"}, 0, nil, []string{"Usage: cxco version"}, true},
		{"providersim --help", []string{"providersim", "--help"}, 0, nil, []string{"Usage: cxco providersim", "CXCO_PROVIDERSIM_ADDR"}, true},
		{"help", []string{"help"}, 0, []string{"cxco serve", "cxco version"}, nil, true},
		{"no command", nil, 2, nil, []string{"Usage:"}, true},
		{"unknown command", []string{"launch"}, 2, nil, []string{`unknown command "launch"`}, true},
		{"serve with a bad flag value", []string{"serve", "--http", "nowhere"}, 1, nil, []string{"cxco serve:", "--http"}, true},
		{"serve with an unknown flag", []string{"serve", "--turbo"}, 1, nil, []string{"turbo"}, true},
		{"version with an argument", []string{"version", "extra"}, 1, nil, []string{"unexpected argument"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(c.args, &out, &errb, noEnv)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out.String(), errb.String())
			}
			for _, w := range c.stdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range c.stderr {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
		})
	}
	// --help names every flag of serve and its variable.
	var out, errb bytes.Buffer
	run([]string{"serve", "--help"}, &out, &errb, noEnv)
	var c Config
	fs := serveFlags(&c)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(errb.String(), "--"+f.Name+" ") || !strings.Contains(errb.String(), fs.env[f.Name]) {
			t.Errorf("serve --help does not list --%s with %s", f.Name, fs.env[f.Name])
		}
	})
	for _, name := range []string{"http", "sip", "rtp-ports", "public-ip", "redis", "agency-key", "secret-key", "provider-url",
		"trunk-allow", "webhook-allow-insecure", "webhook-retry", "whatsapp-verify-delay"} {
		if fs.Lookup(name) == nil {
			t.Errorf("DESIGN.md's --%s is not a flag of serve", name)
		}
	}
}

// TestServeInvalidInFlagTerms: an error about a flag says what the flag wants, in
// the flags' own names, once: a duration that is a bare number asks for a unit
// (it said "parse error"), the default trunk's registration names --trunk-uri and
// --trunk-user (it named the API's registration.user), and a bad --trunk-allow or
// --trunk-uri is reported once (it came again as the default trunk's allow/uri).
func TestServeInvalidInFlagTerms(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string // all in the error
		not  []string // none in the error
		once string   // in the error exactly once
	}{
		{"duration flag a bare number", []string{"--drain-timeout", "600"}, nil, []string{"drain-timeout", `"600"`, "a duration such as"}, []string{"parse error"}, ""},
		{"duration env a bare number", nil, map[string]string{"CXCO_RTP_TIMEOUT": "30"}, []string{"CXCO_RTP_TIMEOUT", "a duration such as"}, []string{"parse error"}, ""},
		{"register without uri or user", []string{"--trunk-register"}, nil, []string{"--trunk-register", "--trunk-registrars or --trunk-uri", "--trunk-user"}, []string{"registration.user", "trunk's uri"}, ""},
		{"trunk allow garbage", []string{"--trunk-allow", "10.0.0.0/8,not-a-cidr"}, nil, []string{"--trunk-allow"}, nil, "not-a-cidr"},
		{"trunk uri scheme", []string{"--trunk-uri", "http://trunk.example.com"}, nil, []string{"--trunk-uri"}, nil, "http://trunk.example.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseServe(c.args, c.env)
			if err == nil {
				t.Fatalf("accepted %v %v", c.args, c.env)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, w := range c.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
			if c.once != "" && strings.Count(err.Error(), c.once) != 1 {
				t.Errorf("error %q mentions %q %d times", err, c.once, strings.Count(err.Error(), c.once))
			}
		})
	}
}
