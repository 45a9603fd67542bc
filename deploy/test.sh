#!/usr/bin/env bash
# Runs every test of the gateway. Installs what the tests need from Debian packages
# when it is missing (redis-server, sip-tester, chromium for the dashboard's browser
# tests, kamailio for the scale-out tests), and fails — never skips — when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
# kamailio lives in /usr/sbin, which is not on every user's PATH.
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]} from Debian packages"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null; }; then
    echo "test.sh: could not install ${need[*]}; the tests need them (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 14m ./...
echo "== fuzz (briefly: the SIP INVITE path, SDP, RTP input, the jitter buffer)"
for target in "FuzzInvite ./sip/" "FuzzParseNegotiate ./media/sdp/" "FuzzPacketInput ./media/" "FuzzBuffer ./media/jitter/"; do
  set -- $target
  go test -run '^$' -fuzz "^$1\$" -fuzztime 10s "$2"
done
