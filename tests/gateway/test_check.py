"""--check validates config and rules: exit 0 when good, 1 with file:line when not."""
import os
import subprocess

from gwtest import DEFAULT_RULE, check, run, tmpdir

d = tmpdir()
r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin"])
check(r.returncode == 0, "default rule should pass --check: %s" % r.stderr)

bad = os.path.join(d, "bad.lua")
with open(bad, "w") as f:
    f.write("-- a rule with a syntax error on line 3\nlocal x = 1\nfunction on_packet(p\n")
r = run(["--check", "-r", bad])
check(r.returncode == 1, "syntax error must exit 1, got %d" % r.returncode)
check("bad.lua:" in r.stderr, "error must name file:line: %s" % r.stderr)

cfg = os.path.join(d, "gw.conf")
with open(cfg, "w") as f:
    f.write('rules = "%s"\nmqtt = { url = "mqtt://localhost:1883", keepalive = 30 }\n'
            'sources = { "rx=stdin" }\nmqqt = 1\n' % DEFAULT_RULE)
r = run(["--check", "-c", cfg])
check(r.returncode == 1 and "mqqt" in r.stderr, "unknown config key must be reported: %s" % r.stderr)

with open(cfg, "w") as f:
    f.write('rules = "%s"\nmqtt = { keepalive = "soon" }\n' % DEFAULT_RULE)
r = run(["--check", "-c", cfg])
check(r.returncode == 1 and "mqtt.keepalive" in r.stderr, "type error must name the key: %s" % r.stderr)

r = run(["--check", "-r", DEFAULT_RULE, "-s", "bogus:thing"])
check(r.returncode == 1 and "bogus" in r.stderr, "bad source spec must be reported: %s" % r.stderr)

r = run(["--check", "-r", DEFAULT_RULE, "--mqtt", "http://nope"])
check(r.returncode == 1, "bad MQTT URL must be reported: %s" % r.stderr)

# What the daemon would refuse or run degraded on is caught by --check too, each with exit 1
# and a message naming the problem.
r = run(["--check", "-r", DEFAULT_RULE])
check(r.returncode == 1 and "no sources" in r.stderr, "no sources must fail --check: %s" % r.stderr)
missing = os.path.join(d, "no-such-capture.log")
r = run(["--check", "-r", DEFAULT_RULE, "-s", "rx=file:" + missing])
check(r.returncode == 1 and missing in r.stderr and "rx" in r.stderr,
      "a file: source that does not exist must fail --check: %s" % r.stderr)
blocker = os.path.join(d, "plain-file")
open(blocker, "w").close()
r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin", "--state-dir", os.path.join(blocker, "s")])
check(r.returncode == 1 and "state directory" in r.stderr and "plain-file" in r.stderr,
      "a state directory that cannot be created must fail --check: %s" % r.stderr)
r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin", "--spool", os.path.join(blocker, "spool")])
check(r.returncode == 1 and "spool.dir" in r.stderr and "plain-file" in r.stderr,
      "a spool directory that cannot be created must fail --check: %s" % r.stderr)
# A read-only mount (as /var is outside StateDirectory= under ProtectSystem=strict): root's
# access() would say yes, the daemon's mkdir would fail. Skipped where mounting is not allowed.
ro = os.path.join(d, "ro")
os.mkdir(ro)
if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", ro],
                  capture_output=True).returncode == 0:
    try:
        r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin", "--state-dir", ro + "/state"])
    finally:
        subprocess.run(["umount", ro])
    check(r.returncode == 1 and "Read-only file system" in r.stderr,
          "a state directory on a read-only mount must fail --check: %s" % r.stderr)
else:
    print("note: cannot mount a tmpfs: read-only case skipped")
fresh = os.path.join(d, "fresh-state")
r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin", "--state-dir", fresh])
check(r.returncode == 0 and not os.path.exists(fresh),
      "--check must create nothing (state directory %s): %s" % (fresh, r.stderr))
nocafile = os.path.join(d, "no-such-ca.pem")
r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin", "--mqtt", "mqtts://localhost:8883",
         "-o", "mqtt.cafile=" + nocafile])
check(r.returncode == 1 and "tls" in r.stderr and nocafile in r.stderr,
      "a CA file that does not exist must fail --check (the TLS library refuses it): %s"
      % r.stderr)

r = run(["--help"])
check(r.returncode == 0 and "--dry-run" in r.stdout and "--influx-db" in r.stdout, "--help")
r = run(["--version"])
check(r.returncode == 0 and r.stdout.startswith("iiotgw "), "--version")
print("ok")
