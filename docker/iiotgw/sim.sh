#!/bin/sh
# docker/iiotgw/sim.sh — the stack's default telemetry source when there is no hardware:
# node 1's host simulator sends radio frames over loopback UDP to node 2's simulator, which
# prints the receiver's RTT output on stdout exactly as probe-rs would. iiotgw runs this as
# `sim=exec:/usr/local/bin/iiotgw-sim` and stops the whole process group when it stops.
# Extra arguments go to node2_sim; SIM_SPEED speeds simulated time up (default 1 = real time).
set -eu
speed=${SIM_SPEED:-1}
node1_sim --speed "$speed" >/dev/null 2>&1 &
exec node2_sim --speed "$speed" "$@"
