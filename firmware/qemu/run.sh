#!/bin/bash
# run.sh — the two node images as ARM machine code under QEMU (netduinoplus2), joined by the
# RYLR998 radio bridge; node 2's console UART exposed as a pseudo-terminal.
#
#   firmware/qemu/run.sh [--seconds N] [--loss P] [--corrupt P] [--distance M] [--seed N]
#                        [--images DIR] [--log-dir DIR] [--icount SHIFT]
#
# First line of output: "pty: /dev/pts/N" — node 2's USART2, where the receiver prints its
# log lines ("INFO  telemetry {...}", one per accepted packet), e.g.
#   iiotgw -s serial:/dev/pts/N ...
# Then it runs for N seconds (default 0 = until SIGINT/SIGTERM), stops both QEMU processes and
# the bridge, and prints the bridge's JSON summary ("radio: {...}"). Everything it started is
# stopped on every exit path (normal end, error, signal).
#
#   --images DIR   where node1-qemu.elf / node2-qemu.elf are (default build-arm; built there
#                  with firmware/build-arm.sh if missing)
#   --log-dir DIR  keep node 1's console (node1.log), node 2's bare data port (node2-data.log),
#                  the bridge's AT trace (radio-trace.log) and summary (radio.json), QEMU's
#                  stderr (qemu1.err, qemu2.err); default: a temporary directory, removed
#   --loss/--corrupt/--distance/--seed   channel model, as node1_sim/node2_sim (radio_bridge.py)
#   --icount SHIFT run QEMU with -icount shift=SHIFT,sleep=on (default: off, virtual time =
#                  host time)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
FW=$(dirname "$HERE")
SECONDS_RUN=0 LOSS=0 CORRUPT=0 DISTANCE=30 SEED=1 IMAGES=build-arm LOGDIR="" ICOUNT=""
QEMU=${QEMU:-qemu-system-arm}

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
    case $1 in
        --seconds) SECONDS_RUN=$2; shift 2 ;;
        --loss) LOSS=$2; shift 2 ;;
        --corrupt) CORRUPT=$2; shift 2 ;;
        --distance) DISTANCE=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --images) IMAGES=$2; shift 2 ;;
        --log-dir) LOGDIR=$2; shift 2 ;;
        --icount) ICOUNT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage ;;
    esac
done
[[ $SECONDS_RUN =~ ^[0-9]+$ ]] || { echo "run.sh: --seconds wants an integer" >&2; exit 2; }

WORK=$(mktemp -d /tmp/fw-qemu.XXXXXX)
if [[ -z $LOGDIR ]]; then LOGDIR=$WORK; fi
mkdir -p "$LOGDIR"
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # QEMU first (their sockets close, the bridge sees both gone), then the bridge.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -s $LOGDIR/radio.json ]]; then echo "radio: $(cat "$LOGDIR/radio.json")"; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ ! -f $IMAGES/node1-qemu.elf || ! -f $IMAGES/node2-qemu.elf ]]; then
    "$FW/build-arm.sh" "$IMAGES" >"$WORK/build.log" 2>&1 ||
        { cat "$WORK/build.log" >&2; exit 1; }
fi

/usr/bin/python3 "$HERE/radio_bridge.py" --sock1 "$WORK/radio1" --sock2 "$WORK/radio2" \
    --loss "$LOSS" --corrupt "$CORRUPT" --distance "$DISTANCE" --seed "$SEED" \
    --stats "$LOGDIR/radio.json" --trace "$LOGDIR/radio-trace.log" &
PIDS+=($!)
for _ in $(seq 100); do
    [[ -S $WORK/radio1 && -S $WORK/radio2 ]] && break
    sleep 0.05
done
[[ -S $WORK/radio1 && -S $WORK/radio2 ]] || { echo "run.sh: radio bridge did not start" >&2; exit 1; }

qemu_args=(-M netduinoplus2 -display none -monitor none -nodefaults)
if [[ -n $ICOUNT ]]; then qemu_args+=(-icount "shift=$ICOUNT,sleep=on"); fi
# -serial order on this machine: USART1, USART2, USART3, UART4.
"$QEMU" "${qemu_args[@]}" -kernel "$IMAGES/node2-qemu.elf" \
    -chardev socket,id=radio,path="$WORK/radio2" \
    -serial null -serial pty -serial file:"$LOGDIR/node2-data.log" -serial chardev:radio \
    >"$LOGDIR/qemu2.err" 2>&1 &
PIDS+=($!)
pty=""
for _ in $(seq 100); do
    pty=$(sed -n 's/.*char device redirected to \(\/dev\/pts\/[0-9]*\) (label serial1).*/\1/p' \
        "$LOGDIR/qemu2.err" | head -1)
    [[ -n $pty ]] && break
    sleep 0.05
done
[[ -n $pty ]] || { echo "run.sh: node 2 QEMU gave no pty" >&2; cat "$LOGDIR/qemu2.err" >&2; exit 1; }
echo "pty: $pty"

"$QEMU" "${qemu_args[@]}" -kernel "$IMAGES/node1-qemu.elf" \
    -chardev socket,id=radio,path="$WORK/radio1" \
    -serial null -serial file:"$LOGDIR/node1.log" -serial null -serial chardev:radio \
    >"$LOGDIR/qemu1.err" 2>&1 &
PIDS+=($!)

if ((SECONDS_RUN > 0)); then
    end=$((SECONDS + SECONDS_RUN))
    while ((SECONDS < end)); do
        # A QEMU or the bridge that died ends the run early, with an error.
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || { echo "run.sh: process $pid exited" >&2; exit 1; }
        done
        sleep 0.2
    done
else
    wait -n "${PIDS[@]}" || true
    echo "run.sh: a process exited" >&2
    exit 1
fi
