#!/usr/bin/env bash
# The gateway's load test: see deploy/loadtest/PERFORMANCE.md.
#   deploy/loadtest/run.sh                      # short run (~1 minute)
#   deploy/loadtest/run.sh -calls 500 -rate 100 -concurrency 500 -hold 60s
# Installs what it needs (sip-tester, tshark's dumpcap, redis-server) when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v dumpcap >/dev/null || need+=(tshark)
command -v redis-server >/dev/null || need+=(redis-server)
if ((${#need[@]})); then
	echo "installing ${need[*]}" >&2
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
exec go run ./deploy/loadtest "$@"
