"""No rule call blocks the daemon longer than rule_time_limit, and no rule text can forge a log
line. Drives the real binary: a file source whose packets make the rule hang in C library
functions (which run no VM instructions), in a catastrophic pattern, and in gw.json of a 2 GiB
text; each such packet is dead-lettered with a clear error within the limit and every other
packet still comes out (--dry-run prints the publishes). gw.log text and rule errors that
carry newlines stay on their own quoted line. --check of a rule whose top level never
returns ends within the default limit (1 s) with the reason, and so does a hot reload to it:
the old rule keeps serving packets."""
import json
import os
import resource
import signal
import subprocess
import threading
import time

from gwtest import check, fail, iiotgw, run, stop_process, tmpdir

d = tmpdir()
rule = os.path.join(d, "rule.lua")
with open(rule, "w") as f:
    f.write(r"""-- test rule: hangs or misbehaves on purpose for some packets
local big = string.rep("x", 8 * 1024 * 1024)
local many = {} for i = 1, 256 do many[i] = big end
function on_packet(p, meta)
  if p.ts == 2 then table.move({}, 1, math.maxinteger // 2, 1) end
  if p.ts == 3 then string.find(string.rep("a", 30000), ".-.-.-.-.-.-b") end
  if p.ts == 4 then local s = string.rep("", math.maxinteger) end   -- returns at once now
  if p.ts == 5 then gw.publish("big", many) end                      -- 2 GiB of JSON
  if p.ts == 6 then gw.log("info", "hello\nts=2026-01-01T00:00:00.000Z level=error event=forged") end
  if p.ts == 7 then error("bad\nts=2026-01-01T00:00:00.000Z level=error event=forged2\r") end
  if p.ts == 8 then error("t/\226\128\168\194\133\255") end -- U+2028, U+0085, a bad byte
  gw.publish("ok/" .. p.ts, p.ts)
end
""")
src = os.path.join(d, "in.log")
with open(src, "w") as f:
    for ts in range(1, 11):
        f.write('{"ts":%d}\n' % ts)
dl = os.path.join(d, "dead.jsonl")
t0 = time.monotonic()
r = run(["-r", rule, "-s", "cap=file:" + src, "--dry-run", "--deadletter", dl,
         "-o", "rule_time_limit=0.3"], timeout=60)
elapsed = time.monotonic() - t0
check(r.returncode == 0, "exit %d\n%s" % (r.returncode, r.stderr[-3000:]))
# Two time-limited packets (0.3 s each) and start-up: far from a hang.
check(elapsed < 5, "run took %.1f s" % elapsed)
rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
check(rss_kb < 256 * 1024, "peak RSS %d KiB: the 2 GiB gw.publish was not capped" % rss_kb)

# Split on "\n" only: str.splitlines() would also split inside a record at U+2028/U+0085.
published, dead = set(), []
for ln in r.stdout.split("\n"):
    if ln.startswith("PUBLISH "):
        published.add(ln.split(" ")[1])
    elif ln.startswith("DEADLETTER "):
        dead.append(json.loads(ln[11:]))
want = {"ok/%d" % ts for ts in (1, 4, 6, 9, 10)}
check(published == want, "published %r, want %r" % (sorted(published), sorted(want)))

if os.path.exists(dl):
    dead += [json.loads(x) for x in open(dl)]
recs = {x["line"]: x for x in dead}
check(sorted(recs) == [2, 3, 5, 7, 8], "dead-letter lines %r" % sorted(recs))
check("call time limit exceeded" in recs[2]["error"] and "rule.lua:5" in recs[2]["error"],
      "table.move: %r" % recs[2]["error"])
check("pattern too complex" in recs[3]["error"], "pattern: %r" % recs[3]["error"])
check("out of memory" in recs[5]["error"], "2 GiB publish: %r" % recs[5]["error"])

# Every stderr line is one event of ours; nothing forged.
for ln in r.stderr.rstrip("\n").split("\n"):
    check(ln.startswith("ts=") or ln.startswith("iiotgw:"), "stray log line: %r" % ln)
    check("event=forged" not in ln.split(" msg=")[0].split(" error=")[0],
          "forged event: %r" % ln)
check(r.stderr.count("event=rule_error") == 5, "rule_error lines:\n" + r.stderr[-3000:])
check('msg="hello\\nts=2026-01-01T00:00:00.000Z level=error event=forged"' in r.stderr,
      "gw.log text not quoted and escaped:\n" + r.stderr[-2000:])
check("event=forged2\\r" in r.stderr, "rule error not escaped:\n" + r.stderr[-2000:])
check("\\u2028\\u0085\\xff" in r.stderr, "topic not escaped:\n" + r.stderr[-2000:])

# --check: a top level that never returns ends within the default limit (1 s).
hang = os.path.join(d, "hang.lua")
with open(hang, "w") as f:
    f.write("table.move({}, 1, math.maxinteger // 2, 1)\n")
t0 = time.monotonic()
r = run(["--check", "-r", hang, "-s", "stdin", "--mqtt", "none",
         "--state-dir", os.path.join(d, "state")], timeout=30)
elapsed = time.monotonic() - t0
check(r.returncode != 0, "--check accepted a rule that never loads")
check("call time limit exceeded (1 s" in r.stderr, "--check reason:\n" + r.stderr)
check(elapsed < 3, "--check took %.1f s" % elapsed)

# Hot reload to a rule whose top level never returns: the reload fails within the limit, with
# the reason, and the running rule keeps serving packets.
live = os.path.join(d, "live.lua")
with open(live, "w") as f:
    f.write('function on_packet(p) gw.log("info", "v/" .. p.ts .. " old") end\n')
proc = subprocess.Popen([iiotgw(), "-r", live, "-s", "stdin", "--dry-run",
                         "-o", "rule_time_limit=0.3", "-o", "reload_debounce=0.05"],
                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        text=True)
log = []  # the rule reports through gw.log: stderr is unbuffered, --dry-run's stdout is not
threading.Thread(target=lambda: [log.append(x) for x in proc.stderr], daemon=True).start()


def wait(lines, word, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(word in x for x in lines):
            return time.monotonic()
        time.sleep(0.02)
    fail("timed out waiting for %r:\n%s" % (word, "".join(log[-20:])))


try:
    proc.stdin.write('{"ts":1}\n')
    proc.stdin.flush()
    wait(log, "v/1")
    tmp = live + ".tmp"
    with open(tmp, "w") as f:
        f.write("table.move({}, 1, math.maxinteger // 2, 1)\n"
                'function on_packet(p) gw.log("info", "v/" .. p.ts .. " new") end\n')
    os.rename(tmp, live)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    t1 = wait(log, "event=rules_reload_failed")
    check(t1 - t0 < 2.5, "failed reload reported after %.1f s" % (t1 - t0))
    failed = [x for x in log if "event=rules_reload_failed" in x][0]
    check("call time limit exceeded (0.3 s" in failed and "keeping=previous" in failed,
          "reload failure: %r" % failed)
    proc.stdin.write('{"ts":2}\n')
    proc.stdin.flush()
    wait(log, "v/2")
    check(any("v/2 old" in x for x in log), "old rule not serving:\n" + "".join(log))
finally:
    proc.stdin.close()
    stop_process(proc, 10)
print("ok")
