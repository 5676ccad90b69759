"""bench_params.py — what reading the tunable parameters costs the default rule per packet.

    bench_params.py BENCH_PARAMS [SECONDS]

Runs tests/bench/bench_params (extract + decode + rule + line protocol, sinks disabled) on
rules/default.lua as shipped (its thresholds read from gw.param handles, TEMP_HIGH[node]) and
on a copy where each handle is replaced by the default as a plain constant (TEMP_HIGH = 35.0,
what the rule did before it had params), both in one process, interleaved in batches of 2000
packets and timed in thread CPU time (so other load on the machine cancels out). Prints the
per-packet times and the overhead ratio; the target is < 5 %.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULE = os.path.join(ROOT, "rules", "default.lua")
SAMPLE = os.path.join(ROOT, "tests", "data", "probe-rs-session.log")


def constants_variant(text):
    """default.lua with every gw.param handle replaced by its default as a constant."""
    names = {"TEMP_HIGH": "temp_high", "TEMP_CLEAR": "temp_clear", "OFFLINE_AFTER": "offline_after"}
    for var, key in names.items():
        text, n = re.subn(r"local %s = gw\.param\{.*?\n\}" % var,
                          "local %s = DEFAULTS.%s" % (var, key), text, flags=re.S)
        if n != 1:
            sys.exit("bench_params: cannot find the declaration of %s in %s" % (var, RULE))
        text, n = re.subn(r"\b%s\[node\]" % var, var, text)
        if n == 0:
            sys.exit("bench_params: %s[node] is never read in %s" % (var, RULE))
    if "gw.param{" in text:
        sys.exit("bench_params: a gw.param declaration was left in the constants variant")
    return text


def main():
    bench = sys.argv[1]
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
    with open(RULE) as f:
        text = f.read()
    with tempfile.TemporaryDirectory(prefix="iiotgw-bench-params-") as d:
        const_rule = os.path.join(d, "default_constants.lua")
        with open(const_rule, "w") as f:
            f.write(constants_variant(text))
        r = subprocess.run(["taskset", "-c", "0", bench, RULE, const_rule, SAMPLE, str(secs)],
                           capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("bench_params failed:\n%s%s" % (r.stdout, r.stderr))
    m = re.search(r"^A .*: ([\d.]+) ns/packet", r.stdout, re.M)
    n = re.search(r"^B .*: ([\d.]+) ns/packet", r.stdout, re.M)
    q = re.search(r"^ratio A/B: ([\d.]+) (.*)$", r.stdout, re.M)
    if not (m and n and q):
        sys.exit("bench_params printed no figures:\n" + r.stdout)
    tp, tc, ratio = float(m.group(1)), float(n.group(1)), float(q.group(1))
    print("default rule, per packet (extract + decode + rule + line protocol, sinks disabled, %s):"
          % q.group(2).strip("()"))
    print("  thresholds from gw.param handles: %7.1f ns/packet" % tp)
    print("  thresholds as constants:          %7.1f ns/packet  (reference, same run)" % tc)
    print("  ratio params/constants:           %.4f -> overhead %+.2f %% (target < 5 %%)  %s"
          % (ratio, (ratio - 1) * 100, "PASS" if ratio < 1.05 else "MISS"))


if __name__ == "__main__":
    main()
