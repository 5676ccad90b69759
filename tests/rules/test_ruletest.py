"""test_ruletest.py — `iiotgw test`: the shipped rule test files pass, a broken rule fails with a
readable diff, and bad test files are reported with FILE:LINE and exit code 2, never a crash.

    IIOTGW_BIN=build/iiotgw python3 tests/rules/test_ruletest.py

1. `iiotgw test rules/tests/*.t` exits 0 and its last line is "N passed, 0 failed".
2. A copy of rules/default.lua with temp_high 35.0 -> 36.0, made in a temporary directory,
   run against the hysteresis test of rules/tests/default.t (copied next to it): exit 1, a
   FAIL line, and the diff names the first differing line and shows the expected firing alert
   as "-" and what the broken rule did instead.
   The complete example in docs/rules.md passes as written, and the publishes `--dry-run`
   prints for the sample session, pasted into a test, pass.
3. Errors in a test file: exit 2 with FILE:LINE on stderr (unknown section, missing rule file,
   unknown input step, malformed pattern, no tests); a rule with a Lua syntax error fails its
   test (exit 1) with the loader's message.
4. Robustness: a few hundred mutations of a shipped test file (lines dropped, duplicated,
   truncated, bytes flipped) each exit 0, 1 or 2, never by a signal or a sanitizer report
   (ASan and UBSan exit 1 too, so stderr is checked), within the timeout.
"""
import glob
import os
import random
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "gateway"))
from gwtest import ROOT, check, fail, run, tmpdir  # noqa: E402

TESTS = sorted(glob.glob(os.path.join(ROOT, "rules", "tests", "*.t")))


def shipped():
    check(len(TESTS) >= 3, "rules/tests/*.t: expected the shipped test files, found %r" % TESTS)
    r = run(["test"] + TESTS, timeout=120)
    print(r.stdout, end="")
    check(r.returncode == 0, "iiotgw test rules/tests/*.t exited %d:\n%s%s"
          % (r.returncode, r.stdout, r.stderr))
    last = r.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"(\d+) passed, 0 failed", last)
    want = sum(1 for t in TESTS for l in open(t) if l.startswith("==="))
    check(m and int(m.group(1)) == want, "last line: %r, expected %d passed" % (last, want))
    oks = [l for l in r.stdout.splitlines() if l.startswith("ok ")]
    check(len(oks) == int(m.group(1)), "one ok line per test: %d vs %s" % (len(oks), last))


def broken_rule(d):
    src = open(os.path.join(ROOT, "rules", "default.lua")).read()
    broken = src.replace("temp_high = 35.0,", "temp_high = 36.0,")
    check(broken != src, "rules/default.lua no longer has 'temp_high = 35.0,'")
    with open(os.path.join(d, "default.lua"), "w") as f:
        f.write(broken)
    # The hysteresis test of the shipped file, pointed at the copy.
    text = open(os.path.join(ROOT, "rules", "tests", "default.t")).read()
    blocks = re.split(r"(?m)^(?====)", text)
    hyst = [b for b in blocks if b.startswith("===")
            and "fires at 35.0" in b]
    check(len(hyst) == 1, "default.t: the temperature hysteresis test not found")
    t = os.path.join(d, "broken.t")
    with open(t, "w") as f:
        f.write("--- rule: default.lua\n\n" + hyst[0])
    r = run(["test", t])
    print(r.stdout, end="")
    check(r.returncode == 1, "broken rule: exit %d, expected 1\n%s%s"
          % (r.returncode, r.stdout, r.stderr))
    out = r.stdout
    lines = out.splitlines()
    check(lines[-1] == "0 passed, 1 failed", "broken rule: last line %r" % lines[-1])
    check(re.search(r"(?m)^FAIL 1 - temperature alert: fires at 35\.0", out), "no FAIL line")
    check(re.search(r"alerts: expected 4, got 2; first difference at expected line 1 "
                    r"\(.*broken\.t:\d+\), got line 1", out), "no first-difference header")
    # The missing firing at 35.0 is shown as expected-only, marked as the first difference;
    # the broken rule fired at 36.2 instead.
    check(re.search(r'(?m)^   >- iiot/alerts/node1/temperature qos=1 retain=1 .*"state":"firing",'
                    r'"threshold":35\.0,"time":"2026-01-01T00:00:20Z","value":35\.0\}$', out),
          "the expected firing alert is not the marked '-' line")
    check(re.search(r'(?m)^    \+ iiot/alerts/node1/temperature qos=1 retain=1 .*"state":"firing",'
                    r'"threshold":36\.0,"time":"2026-01-01T00:00:30Z","value":36\.2\}$', out),
          "the broken rule's alert is not shown as '+'")
    # ... with a caret under the first character that differs ("35.0" -> "36.0": the '5').
    exp = re.search(r"(?m)^   >- (.*)$", out).group(1)
    got = re.search(r"(?m)^    \+ (.*)$", out).group(1)
    c = next(i for i in range(len(exp)) if exp[i] != got[i])
    check(exp[c] == "5" and got[c] == "6", "first differing character: %r" % exp[c:c + 8])
    check(re.search(r"(?m)^%s\^$" % (" " * (6 + c)), out), "no caret under column %d" % c)


def write(d, name, text):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def bad_files(d):
    rule = os.path.join(ROOT, "rules", "default.lua")
    cases = [
        ("unknown.t", "=== a\n--- rule: %s\n--- outputs\nx\n" % rule, 3, "unknown section"),
        ("norule.t", "=== a\n--- rule: nope.lua\n--- input\n{}\n", 2, "rule file"),
        ("step.t", "=== a\n--- rule: %s\n--- input\n@sleep 3\n" % rule, 4, "unknown input step"),
        ("pat.t", "=== a\n--- rule: %s\n--- publishes\n~ x[\n" % rule, 4, "bad pattern"),
        ("adv.t", "=== a\n--- rule: %s\n--- input\n@advance -1\n" % rule, 4, "seconds"),
        ("cfg.t", "=== a\n--- rule: %s\n--- config\nnot_a_key = 1\n" % rule, 4, "config"),
        ("empty.t", "# nothing here\n", 1, "no tests"),
        ("twice.t", "=== a\n--- rule: %s\n--- alerts\n--- alerts\n" % rule, 4, "twice"),
        ("stray.t", "stray text\n=== a\n--- rule: %s\n" % rule, 1, "before the first test"),
        ("file.t", "=== a\n--- rule: %s\n--- input\n@file missing.log\n" % rule, 4, "@file"),
        ("param.t", "=== a\n--- rule: %s\n--- input\n@param temp_high\n" % rule, 4, "@param"),
    ]
    for name, text, line, what in cases:
        p = write(d, name, text)
        r = run(["test", p])
        check(r.returncode == 2, "%s: exit %d, expected 2\n%s%s"
              % (name, r.returncode, r.stdout, r.stderr))
        check(re.search(r"(?m)^%s:%d: .*%s" % (re.escape(p), line, re.escape(what)), r.stderr),
              "%s: stderr lacks '%s:%d: ...%s':\n%s" % (name, p, line, what, r.stderr))
    # A good file next to a bad one still runs; the exit code says a file was bad.
    good = write(d, "good.t", "=== ok\n--- rule: %s\n--- input\n{}\n--- alerts\n" % rule)
    r = run(["test", good, os.path.join(d, "unknown.t")])
    check(r.returncode == 2 and "ok 1 - ok" in r.stdout, "good + bad: %d\n%s" % (r.returncode,
                                                                             r.stdout))
    # The rule under test has a syntax error: its test fails with the loader's message.
    write(d, "bad.lua", "function on_packet(pkt\n")
    p = write(d, "badlua.t", "=== syntax\n--- rule: bad.lua\n--- input\n{}\n")
    r = run(["test", p])
    check(r.returncode == 1 and re.search(r"(?m)^FAIL 1 - syntax\n    the rule did not load: "
                                          r".*bad\.lua:\d+:", r.stdout),
          "bad Lua: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    # Hostile capture times on the packet clock: huge uptimes and reboots never overflow the
    # virtual clock (clock.c saturates it), and a span beyond the tick bound fails the test.
    p = write(d, "bigts.t", "=== big uptimes\n--- rule: %s\n--- config\nclock.mode = packet\n"
              "--- input\n%s--- alerts: contains\n" % (rule, '{"ts":9200000000000}\n{"ts":0}\n'
                                                     '{"ts":4000000000000}\n' * 3))
    r = run(["test", p])
    check(r.returncode == 1 and "more than 1000000 ticks" in r.stdout and
          "runtime error" not in r.stderr and "Sanitizer" not in r.stderr,
          "huge uptimes: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    # A parameter value the rule's declaration refuses fails the test with the refusal.
    p = write(d, "param.t", "=== refused\n--- rule: %s\n--- input\n@param temp_clear node1 = 40\n"
              % rule)
    r = run(["test", p])
    check(r.returncode == 1 and re.search(r"param\.t:4: @param: temp_clear node1: 40 refused: "
                                          r"must stay below temp_high", r.stdout),
          "refused param: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    # Usage errors.
    for args in ([], ["--frobnicate"]):
        r = run(["test"] + args)
        check(r.returncode == 2 and "Usage: iiotgw test" in r.stderr, "usage %r: %d" % (args,
                                                                            r.returncode))
    r = run(["test", "--help"])
    check(r.returncode == 0 and "Usage: iiotgw test" in r.stdout, "test --help")


def mutations(d):
    # The mutated file lives where the shipped one does, so its relative paths still resolve.
    base = os.path.join(ROOT, "rules", "tests", "default.t")
    lines = open(base, "rb").read().split(b"\n")
    rnd = random.Random(12)
    for name in ("default.lua",):
        shutil.copy(os.path.join(ROOT, "rules", name), os.path.join(d, name))
    text0 = b"\n".join(lines).replace(b"../default.lua", b"default.lua").replace(
        b"../../tests/data/", os.path.join(ROOT, "tests", "data").encode() + b"/")
    lines = text0.split(b"\n")
    for i in range(300):
        ls = list(lines)
        for _ in range(rnd.randint(1, 4)):
            k = rnd.randrange(len(ls))
            op = rnd.randrange(5)
            if op == 0:
                del ls[k]
            elif op == 1:
                ls.insert(k, ls[rnd.randrange(len(ls))])
            elif op == 2:
                ls[k] = ls[k][:rnd.randrange(len(ls[k]) + 1)]
            elif op == 3 and ls[k]:
                b = bytearray(ls[k])
                b[rnd.randrange(len(b))] = rnd.randrange(256)
                ls[k] = bytes(b)
            else:
                ls.insert(k, rnd.choice([b"--- input", b"@advance 1e9", b"@every 0.001",
                                         b"--- config", b"max_line = 8", b"=== ", b"~ (",
                                         b"--- start: 1970-01-01T00:00:00Z", b"@tick",
                                         b"clock.mode = packet", b"clock.mode = log",
                                         b"--- alerts: contains", b"{\"ts\":1e30}"]))
        p = os.path.join(d, "m%03d.t" % i)
        with open(p, "wb") as f:
            f.write(b"\n".join(ls))
        r = run(["test", p], timeout=60, errors="replace")
        if r.returncode not in (0, 1, 2) or "Sanitizer" in r.stderr or \
                "runtime error" in r.stderr:
            fail("mutation %d: exit %d (signal?)\n%s\n%s" % (i, r.returncode, r.stdout[-2000:],
                                                             r.stderr[-2000:]))
        os.unlink(p)


def doc_example(d):
    """The complete example of docs/rules.md ("Rule tests") passes as written."""
    text = open(os.path.join(ROOT, "docs", "rules.md")).read()
    m = re.search(r"### A complete example\n.*?```\n(# mytests\.t.*?)```", text, re.S)
    check(m, "docs/rules.md: the complete example of the Rule tests section not found")
    sub = os.path.join(d, "docs")
    os.makedirs(sub, exist_ok=True)
    os.symlink(os.path.join(ROOT, "rules"), os.path.join(d, "rules"))
    p = write(sub, "mytests.t", m.group(1))
    r = run(["test", p])
    check(r.returncode == 0 and r.stdout.strip().endswith("3 passed, 0 failed"),
          "docs/rules.md example: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))


def same_as_dry_run(d):
    """The publishes a test sees for the sample session are exactly what `--dry-run` prints
    for it (the same path, only the clock differs), written as a test file and run."""
    sample = os.path.join(ROOT, "tests", "data", "probe-rs-session.log")
    r = run(["--dry-run", "-r", os.path.join(ROOT, "rules", "default.lua"),
             "-s", "file:" + sample])
    check(r.returncode == 0, "dry run: exit %d\n%s" % (r.returncode, r.stderr[-2000:]))
    # Pasted as printed, keyword and all.
    pubs = [l for l in r.stdout.splitlines() if l.startswith("PUBLISH ")]
    pubs = [p for p in pubs if not p.startswith("PUBLISH iiot/alerts/")]
    check(len(pubs) > 1000, "dry run printed only %d publishes" % len(pubs))
    t = write(d, "dryrun.t", "=== the sample session as --dry-run prints it\n"
              "--- rule: %s\n--- input\n@file %s\n--- publishes\n%s\n"
              % (os.path.join(ROOT, "rules", "default.lua"), sample, "\n".join(pubs)))
    r = run(["test", t])
    check(r.returncode == 0, "the dry run's publishes as a test: exit %d\n%s"
          % (r.returncode, r.stdout[-3000:]))


def main():
    d = tmpdir()
    shipped()
    doc_example(d)
    same_as_dry_run(d)
    broken_rule(d)
    bad_files(d)
    mutations(d)
    print("ok")


if __name__ == "__main__":
    main()
