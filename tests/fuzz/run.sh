#!/usr/bin/env bash
# tests/fuzz/run.sh — build the libFuzzer harnesses (clang) and run them. See docs/fuzzing.md.
#
#   bash tests/fuzz/run.sh NAME SECONDS [libFuzzer args...]   long run of fuzz_NAME
#   bash tests/fuzz/run.sh --smoke [BUILD_DIR]                 every harness for a few seconds
#
# The harnesses are built in BUILD_DIR (default build/fuzz-build), a clang tree configured with
# -DIIOTGW_FUZZ=ON. A long run fuzzes a work corpus build/fuzz-corpus/NAME (seeded from
# tests/fuzz/corpus/NAME, kept between runs) and writes crashes, leaks and timeouts to
# build/fuzz-artifacts/NAME/. The smoke fuzzes a copy of each seed corpus in a temp dir that is
# removed afterwards, so the repository is never modified; any crash, leak or timeout fails it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

fuzz_build() {
    local dir=$1
    if ! command -v clang >/dev/null; then
        echo "fuzz: clang not found; install clang and libclang-rt-14-dev (bash tests/setup.sh)" >&2
        exit 1
    fi
    if [ ! -f "$dir/CMakeCache.txt" ]; then
        cmake -S "$root" -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DIIOTGW_FUZZ=ON -DIIOTGW_SANITIZE=OFF >"$dir.cmake.log" 2>&1 ||
            { cat "$dir.cmake.log"; exit 1; }
    fi
    cmake --build "$dir" --target fuzz_all -j"${IIOTGW_TEST_JOBS:-2}" >"$dir.build.log" 2>&1 ||
        { tail -60 "$dir.build.log"; exit 1; }
}

harnesses() {
    for f in "$here"/fuzz_*.c; do
        basename "$f" .c | sed 's/^fuzz_//'
    done
}

# Each harness: ASan leak checking on, abort on the first UB report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ "${1:-}" = "--smoke" ]; then
    build=${2:-$root/build/fuzz-build}
    mkdir -p "$build"
    build=$(cd "$build" && pwd)
    secs=${IIOTGW_FUZZ_SMOKE_SECONDS:-5}
    fuzz_build "$build"
    work=$(mktemp -d /tmp/iiotgw-fuzz.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    status=0
    for name in $(harnesses); do
        mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
        if [ -d "$here/corpus/$name" ]; then
            cp -r "$here/corpus/$name/." "$work/$name/corpus/"
        fi
        echo "=== fuzz_$name: ${secs}s"
        if (cd "$work/$name" && "$build/tests/fuzz/fuzz_$name" -max_total_time="$secs" \
                -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
                -artifact_prefix="$work/$name/artifacts/" corpus >"$work/$name/log" 2>&1); then
            grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units' "$work/$name/log" | tail -2
        else
            status=1
            echo "fuzz_$name FAILED:"
            tail -80 "$work/$name/log"
            for a in "$work/$name/artifacts"/*; do
                [ -f "$a" ] || continue
                echo "--- $(basename "$a") (base64):"
                base64 -w 0 "$a" | head -c 4000
                echo
            done
        fi
    done
    exit $status
fi

if [ $# -lt 2 ]; then
    echo "usage: $0 NAME SECONDS [libFuzzer args...] | --smoke [BUILD_DIR]" >&2
    echo "harnesses: $(harnesses | tr '\n' ' ')" >&2
    exit 2
fi
name=$1 secs=$2
shift 2
[ -f "$here/fuzz_$name.c" ] || { echo "no harness tests/fuzz/fuzz_$name.c" >&2; exit 2; }
build=${IIOTGW_FUZZ_BUILD:-$root/build/fuzz-build}
fuzz_build "$build"
corpus=$root/build/fuzz-corpus/$name
artifacts=$root/build/fuzz-artifacts/$name
mkdir -p "$corpus" "$artifacts"
seeds=()
[ -d "$here/corpus/$name" ] && seeds=("$here/corpus/$name")
# New inputs go to the first corpus dir (the work corpus); the seed dir is only read.
exec "$build/tests/fuzz/fuzz_$name" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" "$corpus" "${seeds[@]}"
