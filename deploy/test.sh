#!/usr/bin/env bash
# Runs every test of the gateway. Installs what the tests need from Debian packages
# when it is missing (the list is in --help below), and fails — never skips — when it
# cannot.
# `./deploy/test.sh --help` says what each part runs; flags run some parts only.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: ./deploy/test.sh [--lint] [--unit] [--e2e] [--browser] [--fuzz] [--no-install]

Runs the gateway's tests. With no part flag it runs every part, in this order
(what CI runs; about 6 minutes on 2 cores):

  --lint      gofmt -l over the tracked Go files, then go vet ./...
  --unit      go test -race over every package but cmd/cxco: media, sip, store,
              control, bridge, ... (they start their own redis-server, sipp and
              websockets on loopback where they need them)
  --e2e       go test -race ./cmd/cxco without the browser tests: the built binary
              end to end — SIPp and Go test phones calling it over SIP and RTP,
              transfers, the echo line, RFC 4475 torture messages, Redis outages,
              Kamailio scale-out and failover, baresip calling with SRTP, G.722
              and Opus (dumpcap capturing the SRTP call on loopback)
  --browser   go test -race -run Browser ./cmd/cxco: headless Chromium driving the
              dashboard (in a network namespace of its own); screenshots go to
              $CXCO_ARTIFACTS/dashboard, else to a new temporary folder the test
              prints
  --fuzz      10 s of each fuzz target: the SIP INVITE path, SDP, RTP input, the
              jitter buffer

Before the tests it installs, with apt-get (sudo when not root), whichever of
these Debian packages is missing: redis-server, redis-sentinel, redis-tools
(redis-cli), sip-tester (sipp), libopus0, libspandsp2, kamailio,
kamailio-tls-modules, baresip-core, tshark (dumpcap), iproute2 (ip netns), chromium,
espeak-ng, sox.
--no-install skips that step (the tests then fail, never skip, when a
tool is missing).

Environment: CXCO_ARTIFACTS (where browser screenshots go), CXCO_CHROMIUM (a
Chromium binary to use), GOFLAGS (passed on to go as usual).
EOF
}

parts=()
install=1
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --lint|--unit|--e2e|--browser|--fuzz) parts+=("${arg#--}") ;;
    --no-install) install=0 ;;
    *) echo "test.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
((${#parts[@]})) || parts=(lint unit e2e browser fuzz)
want() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

need=()
if want unit || want e2e || want browser; then
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
  command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
  # Opus is libopus, loaded at run time; G.722 is checked bit for bit against
  # libspandsp (what baresip's g722 module uses).
  ldconfig -p 2>/dev/null | grep -q 'libopus\.so\.0 ' || need+=(libopus0)
  ldconfig -p 2>/dev/null | grep -q 'libspandsp\.so\.2 ' || need+=(libspandsp2)
fi
if want unit || want e2e; then
  # speech for the audio quality tests (media/plc, media/jitter, the impaired network)
  command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
  # resampling, line noise and voicemail beeps for the answering-machine tests (media/amd)
  command -v sox >/dev/null 2>&1 || need+=(sox)
fi
if want e2e; then
  # baresip calls the gateway with SRTP, G.722 and Opus (and over TLS, below);
  # dumpcap captures the SRTP calls to prove no plain RTP crossed the wire.
  command -v dumpcap >/dev/null 2>&1 || need+=(tshark)
  # ip netns: the impaired network, the RTP injector, the browser tests'
  # namespaces (minimal Debian images come without iproute2).
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
  # kamailio lives in /usr/sbin, which is not on every user's PATH.
  command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
  # Kamailio's TLS module plays a carrier's TLS registrar; baresip calls over TLS.
  compgen -G "/usr/lib/*/kamailio/modules/tls.so" >/dev/null || need+=(kamailio-tls-modules)
  command -v baresip >/dev/null 2>&1 || need+=(baresip-core)
fi
if want browser; then
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
fi
if ((${#need[@]})) && ((install)); then
  echo "test.sh: installing ${need[*]} from Debian packages"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null; }; then
    echo "test.sh: could not install ${need[*]}; the tests need them (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

if want lint; then
  echo "== gofmt"
  unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
  if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
  echo "== go vet"
  go vet ./...
fi
if want unit && want e2e && want browser; then
  # All three in one run, as before the parts existed: go test overlaps the
  # packages. cmd/cxco is most of the time, and it mostly waits on calls (its
  # tests use under a quarter of a core on average), so its longest tests run
  # in a second go test beside the first: the suite takes about as long as its
  # longer half instead of the sum.
  slow='^(TestAudioQualityImpairedNetwork|TestProviderCallSuite|TestDockerfile|TestSentinelFailoverDuringCalls|TestClusterFailoverDuringCalls|TestShutdownDuringOutageKeepsWrites|TestNodeKilledMidCall|TestBatchNodeKilledOverSIP|TestRedisOutage|TestSpooledEndCorrectsNodeLost)$'
  second=$(mktemp)
  echo "== go test -race ./... (cmd/cxco's longest tests beside it, reported after)"
  go test -race -count=1 -timeout 18m -run "$slow" ./cmd/cxco >"$second" 2>&1 &
  second_pid=$!
  rc=0
  go test -race -count=1 -timeout 18m -skip "$slow" ./... || rc=$?
  wait "$second_pid" || rc=$?
  echo "== go test -race -run '$slow' ./cmd/cxco"
  cat "$second"
  rm -f "$second"
  if [ "$rc" -ne 0 ]; then exit "$rc"; fi
else
  if want unit; then
    echo "== go test -race (every package but cmd/cxco)"
    go test -race -count=1 -timeout 14m $(go list ./... | grep -v '/cmd/cxco$')
  fi
  if want e2e; then
    echo "== go test -race -skip Browser ./cmd/cxco (end to end)"
    go test -race -count=1 -timeout 18m -skip Browser ./cmd/cxco
  fi
  if want browser; then
    echo "== go test -race -run Browser ./cmd/cxco (headless Chromium)"
    go test -race -count=1 -timeout 10m -run Browser ./cmd/cxco
  fi
fi
if want fuzz; then
  echo "== fuzz (briefly: the SIP INVITE path, SDP, RTP input, the jitter buffer)"
  for target in "FuzzInvite ./sip/" "FuzzParseNegotiate ./media/sdp/" "FuzzPacketInput ./media/" "FuzzBuffer ./media/jitter/"; do
    set -- $target
    go test -run '^$' -fuzz "^$1\$" -fuzztime 10s "$2"
  done
fi
