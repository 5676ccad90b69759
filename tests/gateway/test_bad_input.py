"""Bad input never crashes or stops the gateway: each bad line is logged with its source and
line, counted, and kept in the dead-letter file; good lines around it still go through."""
import json
import os

from gwtest import check, run, tmpdir

d = tmpdir()
rule = os.path.join(d, "rule.lua")
with open(rule, "w") as f:
    f.write("""-- test rule: fails on purpose for some packets
function on_packet(p, meta)
  if p.ts == 13 then error("boom on ts 13") end
  if p.ts == 14 then while true do end end
  if p.ts == 15 then local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 100) .. i end end
  gw.publish("bad/" .. meta.line, p.ts)
end
""")
good = '[INFO] JSON sent via VCP: {"ts":%d,"id":"N2"}\\n (main.rs:573)'
lines = [
    good % 1,                                              # 1 ok
    'INFO JSON sent via VCP: {"ts":2,"n1":{"t":2x}}\\n',   # 2 invalid JSON
    "x" * 1000,                                            # 3 overlong (max_line 256)
    '[INFO] JSON sent via VCP: {"ts":4,"n1":{"t":1.0},"n2":{"t":2.', # 4 cut short
    good % 13,                                             # 5 rule error
    good % 14,                                             # 6 instruction budget
    good % 15,                                             # 7 memory cap
    "\x1b[32mINFO \x1b[0m just a log line \xff\xfe",       # 8 text, with invalid UTF-8
    good % 9,                                              # 9 ok
]
src = os.path.join(d, "in.log")
with open(src, "wb") as f:
    for ln in lines:
        f.write(ln.encode("utf-8", "surrogateescape") + b"\n")
dl = os.path.join(d, "dead.jsonl")
r = run(["-r", rule, "-s", "cap=file:" + src, "--mqtt", "none", "--deadletter", dl,
         "-o", "max_line=256", "-o", "rule_instr_limit=1000000",
         "-o", "rule_mem_limit=8388608"], timeout=60)
check(r.returncode == 0, "exit %d\n%s" % (r.returncode, r.stderr))

recs = [json.loads(l) for l in open(dl)]
got = sorted((x["line"], x["reason"]) for x in recs)
want = [(2, "invalid_json"), (3, "overlong"), (4, "unterminated"), (5, "rule_error"),
        (6, "rule_error"), (7, "rule_error")]
check(got == want, "dead-letter records %r, want %r" % (got, want))
for x in recs:
    check(x["source"] == "cap", "dead-letter record without source: %r" % x)
    check(x["error"], "dead-letter record without error: %r" % x)
by_line = {x["line"]: x for x in recs}
check("boom on ts 13" in by_line[5]["error"] and "rule.lua:3" in by_line[5]["error"],
      "rule error must carry file:line: %r" % by_line[5])
check(by_line[3]["data"] == "x" * 256, "overlong record must keep the first max_line bytes")
check('"ts":4' in by_line[4]["data"], "cut line must be kept verbatim: %r" % by_line[4])
for ln in (2, 3, 4, 5, 6, 7):
    check("source=cap line=%d " % ln in r.stderr, "no log line naming cap:%d\n%s" % (ln, r.stderr))
check("packets=2 " in r.stderr, "exit log must count 2 good packets:\n" + r.stderr)
print("ok")
