#!/usr/bin/env bash
# tests/setup.sh — install what iiotgw needs to build, test and run its demo (Debian 12, root).
#
# Idempotent: only packages that are missing are installed, so a warm machine pays nothing.
# The build package list is the same one README.md and docker/Dockerfile use.
set -euo pipefail

# Build dependencies (keep in sync with README.md "deps:build" and docker/Dockerfile).
build_pkgs="build-essential cmake pkg-config liblua5.4-dev libmosquitto-dev libcurl4-openssl-dev libssl-dev libcjson-dev libev-dev zlib1g-dev libsystemd-dev libmicrohttpd-dev libcmocka-dev libncurses-dev"
# Test and demo: real servers, clients, unit-test framework, firmware cross compiler and its
# emulator, clang and its libFuzzer runtime (tests/fuzz), packaging tools (tests/package),
# clang-format (tests/style), prometheus (scrapes --metrics in tests/gateway),
# tmux (drives `iiotgw watch` in tests/gateway).
test_pkgs="lua5.4 mosquitto mosquitto-clients tmux victoria-metrics influxdb influxdb-client curl python3 python3-yaml git docker-compose gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm openssl clang libclang-rt-14-dev clang-format dpkg-dev lintian systemd groff-base man-db prometheus"

want=${1:-all}
case "$want" in
    build) pkgs="$build_pkgs" ;;
    all) pkgs="$build_pkgs $test_pkgs" ;;
    *) echo "usage: $0 [build|all]" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing packages and not root; run: sudo apt-get install$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp /tmp/iiotgw-setup.XXXXXX)
    # The Debian packages of the servers try to start them as services; no init system here,
    # and the tests start their own instances on free ports anyway. A policy-rc.d that already
    # exists is the machine's own and stays as it is; one made here is removed on every exit
    # path, a failed install included.
    own_policy=0
    cleanup_setup() {
        rm -f "$log"
        if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    }
    trap cleanup_setup EXIT
    apt_step() {
        "$@" >"$log" 2>&1 && return 0
        echo "setup: FAILED: $*" >&2
        tail -n 30 "$log" >&2
        exit 1
    }
    apt_step apt-get update -qq
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt_step apt-get install -y -qq --no-install-recommends $missing
fi

# Flux parser for tests/docker (docker_flux_syntax): no InfluxDB 2 runs here, so the Flux
# variant of the Grafana dashboards is at least parsed and type-checked. Needs node + npm.
flux_pkg="@influxdata/flux-lsp-node@0.8.40"
if [ "$want" = all ] && [ "$(id -u)" -eq 0 ]; then
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    if [ ! -d "$(npm root -g)/@influxdata/flux-lsp-node" ]; then
        echo "setup: npm install -g $flux_pkg" >&2
        npm install -g --no-audit --no-fund "$flux_pkg" >/dev/null ||
            echo "setup: $flux_pkg not installed; docker_flux_syntax will be skipped" >&2
    fi
fi
