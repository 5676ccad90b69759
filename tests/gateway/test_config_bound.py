"""The config file loader is bounded in time, not only in instructions.

A config file whose top level never finishes must fail within a few seconds with
"FILE:LINE: took longer than N s" (the wall clock), in the daemon and in --check:
  - cheap instructions forever (`while true do end`): the instruction budget stops it;
  - a loop of expensive instructions (copying a 16 MiB string per iteration), which stays
    under the instruction budget for about an hour: only the wall clock stops it.
A normal config file with some arithmetic and loops still loads.
"""
import os
import re
import time

from gwtest import DEFAULT_RULE, check, run, tmpdir, write_file

d = tmpdir()
LIMIT_SLACK = 20  # seconds: the bound is a few seconds; ASan builds are slower


def write(name, text):
    return write_file(d, name, text)


slow = write("slow.conf", 's = "x"\nfor i = 1, 24 do s = s .. s end\nn = 0\n'
                          'while true do local t = s .. n; n = n + 1 end\n')
spin = write("spin.conf", "sources = { 'stdin' }\nwhile true do end\n")
good = write("good.conf", "local n = 0\nfor i = 1, 100000 do n = n + i end\n"
                          "stats_interval = n % 7 + 1\nsources = { 'stdin' }\n")

for path, want in ((slow, r"slow\.conf:4: took longer than \d+ s"),
                   (spin, r"spin\.conf:2: .*too long")):
    for mode in (["--check"], []):
        t0 = time.time()
        try:
            r = run(mode + ["-c", path, "-r", DEFAULT_RULE, "--mqtt", "none", "--deadletter",
                            "none"], input="", timeout=LIMIT_SLACK)
        except Exception as e:  # subprocess.TimeoutExpired
            check(False, "%s %s: still running after %d s (%s)" % (mode, path, LIMIT_SLACK, e))
        dt = time.time() - t0
        check(r.returncode == 1, "%s %s: exit %d (expected 1): %s" % (mode, path, r.returncode,
                                                                       r.stderr))
        check(re.search(want, r.stderr), "%s %s: error %r does not match %r"
              % (mode, path, r.stderr.strip(), want))
        print("%s %s: refused in %.2f s: %s" % (" ".join(mode) or "daemon", os.path.basename(path),
                                               dt, r.stderr.strip()))

r = run(["--check", "-c", good, "-r", DEFAULT_RULE, "--mqtt", "none"], timeout=30)
check(r.returncode == 0, "a normal config file is refused: %s" % r.stderr)
print("PASS")
