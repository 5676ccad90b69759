"""bench_params.py — what reading the tunable parameters costs the default rule per packet.

    bench_params.py BENCH_PIPELINE [SECONDS] [ROUNDS]

Runs tests/bench/bench_pipeline (extract + decode + rule + line protocol, sinks disabled) on
rules/default.lua as shipped (its thresholds read from gw.param handles, TEMP_HIGH[node]) and
on a copy where each handle is replaced by the default as a plain constant (TEMP_HIGH = 35.0,
what the rule did before it had params), alternating the two ROUNDS times in the same run and
keeping each one's best rate. Prints the per-packet times and the overhead ratio; the target
is < 5 %.
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


def rate(bench, rule, secs):
    r = subprocess.run(["taskset", "-c", "0", bench, rule, SAMPLE, str(secs)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("bench_pipeline failed on %s:\n%s%s" % (rule, r.stdout, r.stderr))
    m = re.search(r"rate:\s+(\d+) packets/s", r.stdout)
    if not m:
        sys.exit("bench_pipeline printed no rate:\n" + r.stdout)
    return float(m.group(1))


def main():
    bench = sys.argv[1]
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    with open(RULE) as f:
        text = f.read()
    with tempfile.TemporaryDirectory(prefix="iiotgw-bench-params-") as d:
        const_rule = os.path.join(d, "default_constants.lua")
        with open(const_rule, "w") as f:
            f.write(constants_variant(text))
        best = {"params": 0.0, "constants": 0.0}
        for _ in range(rounds):
            best["constants"] = max(best["constants"], rate(bench, const_rule, secs))
            best["params"] = max(best["params"], rate(bench, RULE, secs))
    tp, tc = 1e9 / best["params"], 1e9 / best["constants"]
    over = tp / tc - 1.0
    print("default rule, per packet (extract + decode + rule + line protocol, best of %d x %.1f s):"
          % (rounds, secs))
    print("  thresholds from gw.param handles: %8.0f packets/s  %7.1f ns/packet" % (best["params"], tp))
    print("  thresholds as constants:          %8.0f packets/s  %7.1f ns/packet  (reference)"
          % (best["constants"], tc))
    print("  ratio params/constants:           %.3f  -> overhead %+.1f %% (target < 5 %%)  %s"
          % (tp / tc, over * 100, "PASS" if over < 0.05 else "MISS"))


if __name__ == "__main__":
    main()
