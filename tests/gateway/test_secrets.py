"""Secrets never reach children nor error messages.

1. $IIOTGW_MQTT_PASSWORD and $IIOTGW_INFLUX_TOKEN (every secret variable src/ reads with
   getenv) are set for the daemon; an exec: source prints its whole environment on stdout and
   stderr (stderr lines are logged) and writes it to a file. Neither secret may appear in the
   child's environment, in the log or in /proc/<daemon>/environ.
2. A malformed --influx URL and a malformed --mqtt URL carrying user:password@ are refused
   with an error that does not contain the password, in the daemon and in --check.
"""
import os
import re
import signal
import subprocess
import time

from gwtest import DEFAULT_RULE, check, iiotgw, run, stop_process, tmpdir, wait_for

d = tmpdir()
SECRETS = {"IIOTGW_MQTT_PASSWORD": "mqtt-s3cret-4711", "IIOTGW_INFLUX_TOKEN": "influx-t0ken-0815"}
src_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
read = set()
for name in os.listdir(src_dir):
    if name.endswith(".c"):
        read |= set(re.findall(r'getenv\("(IIOTGW_[A-Z_]*)"\)', open(os.path.join(src_dir, name)).read()))
NOT_SECRET = {"IIOTGW_CONFIG"}  # a path, not a secret
check(read - NOT_SECRET == set(SECRETS),
      "src/ reads %s with getenv; this test covers %s: add the new secrets (or to NOT_SECRET)"
      % (sorted(read), sorted(SECRETS)))

# --- 1. exec: children ------------------------------------------------------------------------
dump = os.path.join(d, "child.env")
log_path = os.path.join(d, "gw.log")
env = dict(os.environ, **SECRETS)
cmd = "env > %s; env; env >&2; sleep 1000" % dump
# The secrets must be read (sinks enabled) and still not be passed on: an MQTT URL and an
# InfluxDB URL on ports where nothing listens.
with open(log_path, "w") as log:
    gw = subprocess.Popen([iiotgw(), "-r", DEFAULT_RULE, "-s", "rx=exec:" + cmd,
                           "--mqtt", "mqtt://user@127.0.0.1:9", "--influx", "http://127.0.0.1:9",
                           "--influx-db", "x", "--deadletter", "none", "--log-level", "debug"],
                          env=env, stdout=subprocess.DEVNULL, stderr=log)
try:
    check(wait_for(lambda: os.path.exists(dump) and os.path.getsize(dump) > 0 and
                   "source_stderr" in open(log_path).read(), 10),
          "the exec: child never ran:\n" + open(log_path).read())
    time.sleep(0.3)
    with open("/proc/%d/environ" % gw.pid, "rb") as f:
        proc_env = f.read().decode(errors="replace")
finally:
    stop_process(gw, 10)
child_env = open(dump).read()
log_text = open(log_path).read()
check("PATH=" in child_env, "the child's environment dump is empty")
for name, value in SECRETS.items():
    check(name not in child_env, "the exec: child inherited $%s" % name)
    check(value not in child_env, "the exec: child sees the value of $%s" % name)
    check(value not in log_text, "the log shows the value of $%s" % name)
    check(value not in proc_env, "/proc/PID/environ of the daemon still shows $%s" % name)

# --- 2. URLs with credentials in error messages ----------------------------------------------
PW = "hunter2-pw"
# (arguments, strings the error must not contain)
cases = [
    (["--influx", "htp://admin:%s@db.lan:8086" % PW, "--influx-db", "x", "--mqtt", "none"], [PW]),
    (["--influx", "http//admin:%s@db.lan:8086" % PW, "--influx-db", "x", "--mqtt", "none"], [PW]),
    (["--mqtt", "mqtp://admin:%s@broker.lan" % PW], [PW]),
    (["--mqtt", "mqtt://admin:%s@broker.lan:99999" % PW], [PW]),
    (["--mqtt", "mqtt://admin:%s@broker.lan/path" % PW], [PW]),
    # A character the URL cannot carry, inside the password: not quoted either.
    (["--mqtt", "mqtt://admin:Zq/x%s@broker.lan" % PW], [PW, "'/'"]),
]
for args, forbidden in cases:
    for check_mode in ([], ["--check"]):
        r = run(check_mode + ["-r", DEFAULT_RULE, "-s", "stdin", "--deadletter", "none"] + args,
                input="", timeout=20)
        out = r.stdout + r.stderr
        check(r.returncode != 0, "%s %s was accepted" % (check_mode, args))
        for bad in forbidden:
            check(bad not in out, "%s %s: the error shows %r of the password: %s"
                  % (check_mode, args, bad, out))
print("PASS")
