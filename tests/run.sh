#!/usr/bin/env bash
# tests/run.sh — THE test command: every suite, against real servers, twice (normal build and
# ASan+UBSan build), plus the firmware cross-build budget check.
#
#   bash tests/run.sh            (as root on Debian 12; installs missing packages itself)
#
# Servers (mosquitto, victoria-metrics, influxdb 1.6) are started on free loopback ports by
# tests/servers.sh and always stopped on exit. Build trees: build/ and build-asan/.
# Everything the suites need is in the repository (the sample capture is tests/data/). Tests
# leave nothing behind: /tmp and /dev/shm entries with the project's temporary-file prefixes
# that appear during the run and are still there at the end fail the run (one more "failed").
# The last line on stdout is always "N passed, M failed"; the exit status is 0 only if M = 0.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash tests/setup.sh all

work=$(mktemp -d /tmp/iiotgw-test.XXXXXX)
summary_printed=0
cleanup() {
    local rc=$?
    bash tests/servers.sh stop "$work/servers" || true
    rm -rf "$work"
    # A command that failed outside the suites (set -e) still ends with the count line.
    if [ "$summary_printed" = 0 ]; then
        echo "=== tests/run.sh stopped early (exit status $rc)"
        echo
        echo "${total_pass:-0} passed, $((${total_fail:-0} + 1)) failed"
    fi
}
trap cleanup EXIT

# Temporary files and directories the tests (and the programs they run) create; see the
# leftover check at the end.
# (quoted: the patterns are expanded in /tmp and /dev/shm, never in the current directory)
tmp_prefixes=('iiotgw-*' 'iiotgw_*' 'rules-test-*' 'rules-mod-*' 'spooltest-*' 'spoolbench-*'
    'influx_late_vm_*' 'influx_mock_log_*' 'e2e_sim.*' 'tmp.*' 'docker_*' 'mldbm-*')
# Also the daemon's default state directories: every test gives the daemon one of its own
# (STATE_DIRECTORY, --state-dir), so a test run must not create root's or the user's.
state_dirs=(/var/lib/iiotgw "${XDG_STATE_HOME:-${HOME:-/nonexistent}/.local/state}/iiotgw")
tmp_snapshot() {
    (
        shopt -s nullglob
        for d in /tmp /dev/shm; do
            for p in "${tmp_prefixes[@]}"; do
                for f in "$d"/$p; do echo "$f"; done
            done
        done
        for f in "${state_dirs[@]}"; do if [ -e "$f" ]; then echo "$f"; fi; done
    ) | sort -u
}
tmp_snapshot >"$work/tmp-before.txt"

if ! env_out=$(bash tests/servers.sh start "$work/servers"); then
    echo "=== cannot start the test servers (mosquitto, victoria-metrics, influxdb)"
    echo
    echo "0 passed, 1 failed"
    summary_printed=1
    exit 1
fi
eval "$env_out"

jobs=${IIOTGW_TEST_JOBS:-2}
total_pass=0
total_fail=0
status=0

# run_suite NAME BUILD_DIR CMAKE_ARGS...
run_suite() {
    local name=$1 dir=$2
    shift 2
    echo "=== $name: configure + build ($dir)"
    cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$work/$name-cmake.log" 2>&1 ||
        { cat "$work/$name-cmake.log"; return 1; }
    cmake --build "$dir" -j"$jobs" >"$work/$name-build.log" 2>&1 ||
        { tail -60 "$work/$name-build.log"; return 1; }
    echo "=== $name: ctest"
    local log="$work/$name-ctest.log" rc=0
    (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 300) 2>&1 | tee "$log" || rc=$?
    local line pass fail
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1 || true)
    if [ -n "$line" ]; then
        fail=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
        pass=$(( $(echo "$line" | sed -E 's/.* out of ([0-9]+).*/\1/') - fail ))
        total_pass=$((total_pass + pass))
        total_fail=$((total_fail + fail))
    else
        total_fail=$((total_fail + 1))
    fi
    return $rc
}

run_suite normal "$root/build" || status=1
# ASan+UBSan: leaks are reported too; halt on the first UB report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_suite asan "$root/build-asan" -DIIOTGW_SANITIZE=ON || status=1
unset ASAN_OPTIONS UBSAN_OPTIONS

if [ -x firmware/build-arm.sh ]; then
    echo "=== firmware: cross build + flash/RAM budget"
    if bash firmware/build-arm.sh; then
        total_pass=$((total_pass + 1))
    else
        total_fail=$((total_fail + 1)); status=1
    fi
fi

echo "=== leftovers: temporary files the tests did not remove (and default state directories)"
tmp_snapshot >"$work/tmp-after.txt"
left=$(comm -13 "$work/tmp-before.txt" "$work/tmp-after.txt")
if [ -z "$left" ]; then
    echo "none"
    total_pass=$((total_pass + 1))
else
    echo "$left" | sed 's/^/left behind: /'
    total_fail=$((total_fail + 1)); status=1
fi

echo
echo "${total_pass} passed, ${total_fail} failed"
summary_printed=1
exit $status
