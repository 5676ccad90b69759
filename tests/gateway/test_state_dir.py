"""The state directory (src/statedir.c, docs/reliability.md): where the defaults put the
spool, the dead-letter file and the lock, independent of the working directory; a second
instance on the same directory refuses to start naming the holder's PID (exit 4); a spool that
cannot be opened at start is an error; --spool none warns; the default rule and config
files are installed paths, never relative ones."""
import os
import subprocess
import time

import gwtest
from gwtest import DEFAULT_RULE, check, iiotgw, run, stop_process, tmpdir, wait_for

d = tmpdir()
data = os.path.join(d, "in.jsonl")
with open(data, "w") as f:
    f.write('{"n1":{"t":21.5}}\n{"n1":\n')   # one packet, one cut-off line (dead-lettered)
cwd = os.path.join(d, "cwd")
os.mkdir(cwd)
base = ["-r", DEFAULT_RULE, "--mqtt", "none", "-s", "file:" + data]


def env_with(**kw):
    e = dict(os.environ)
    for k, v in kw.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


# 1. Defaults land in $STATE_DIRECTORY (its first entry, as systemd lists several), not in the
#    working directory; the directory and its parents are created with mode 0750.
sd = os.path.join(d, "sd", "deep", "iiotgw")
r = run(base, cwd=cwd, env=env_with(STATE_DIRECTORY=sd + ":" + os.path.join(d, "other")))
check(r.returncode == 0, "default run: exit %d %s" % (r.returncode, r.stderr))
check(os.listdir(cwd) == [], "nothing may be written to the working directory: %s" % os.listdir(cwd))
check(os.path.isdir(sd) and oct(os.stat(sd).st_mode & 0o777) == "0o750",
      "state directory %s missing or not 0750" % sd)
check(not os.path.exists(os.path.join(d, "other")), "only the first $STATE_DIRECTORY entry is used")
with open(os.path.join(sd, "deadletter.jsonl")) as f:
    dl = f.read()
check('"reason":"unterminated"' in dl, "dead letter not in STATE_DIR/deadletter.jsonl: %r" % dl)
check(os.path.exists(os.path.join(sd, "iiotgw.lock")), "no lock file in the state directory")
check("event=state_dir dir=%s " % sd in r.stderr, "the state directory is not logged: %s" % r.stderr)

# --state-dir wins over the environment, and must be absolute.
sd2 = os.path.join(d, "explicit")
r = run(base + ["--state-dir", sd2], cwd=cwd)
check(r.returncode == 0 and os.path.exists(os.path.join(sd2, "deadletter.jsonl")),
      "--state-dir: exit %d %s" % (r.returncode, r.stderr))
r = run(base + ["--state-dir", "relative/state"], cwd=cwd)
check(r.returncode == 1 and "not an absolute path" in r.stderr and os.listdir(cwd) == [],
      "a relative --state-dir must be refused: exit %d %s" % (r.returncode, r.stderr))

# 2. With a sink the spool is on by default, in STATE_DIR/spool (the broker is a closed port:
#    the run ends by its drain timeout, exit 2, with the packet kept in the spool).
port = gwtest.free_port()
sd3 = os.path.join(d, "spooled")
r = run(["-r", DEFAULT_RULE, "-s", "file:" + data, "--mqtt", "mqtt://127.0.0.1:%d" % port,
         "--state-dir", sd3, "-o", "drain_timeout=0.5"], cwd=cwd)
segs = [n for n in os.listdir(os.path.join(sd3, "spool")) if n.endswith(".seg")] \
    if os.path.isdir(os.path.join(sd3, "spool")) else []
check(r.returncode == 2 and segs, "default spool: exit %d, segments %s\n%s"
      % (r.returncode, segs, r.stderr[-1500:]))
check("spool_disabled" not in r.stderr, "the default must not warn about a disabled spool")
r = run(["-r", DEFAULT_RULE, "-s", "file:" + data, "--mqtt", "mqtt://127.0.0.1:%d" % port,
         "--state-dir", os.path.join(d, "nospool"), "--spool", "none", "-o", "drain_timeout=0.2"],
        cwd=cwd)
check("level=warn event=spool_disabled" in r.stderr and
      not os.path.exists(os.path.join(d, "nospool", "spool")),
      "--spool none must warn loudly and create no spool: %s" % r.stderr[-1500:])

# 3. A spool that cannot be opened at start is an error, not a warning followed by exit 0.
blocker = os.path.join(d, "not-a-dir")
open(blocker, "w").close()
r = run(["-r", DEFAULT_RULE, "-s", "file:" + data, "--mqtt", "mqtt://127.0.0.1:%d" % port,
         "--spool", os.path.join(blocker, "spool")], cwd=cwd)
check(r.returncode == 1 and "spool" in r.stderr and "not-a-dir" in r.stderr,
      "an unopenable spool must fail the start: exit %d %s" % (r.returncode, r.stderr[-1500:]))
# ... and a state directory that cannot be created.
r = run(base + ["--state-dir", os.path.join(blocker, "state")], cwd=cwd)
check(r.returncode == 1 and "cannot create" in r.stderr,
      "an uncreatable state directory must fail the start: exit %d %s" % (r.returncode, r.stderr))

# ... and a full disk there is exit 3 (a service manager restarts on it, not on 1): a tmpfs
# without a free inode (skipped where mounting is not allowed).
mnt = os.path.join(d, "full")
os.mkdir(mnt)
m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=1", "tmpfs", mnt],
                   capture_output=True, text=True)
if m.returncode != 0:
    print("note: cannot mount a tmpfs (%s): full-disk case skipped" % m.stderr.strip())
else:
    try:
        r = run(base + ["--state-dir", os.path.join(mnt, "state")], cwd=cwd)
    finally:
        subprocess.run(["umount", mnt])
    check(r.returncode == 3 and "No space left" in r.stderr,
          "a full disk under the state directory must exit 3: exit %d %s"
          % (r.returncode, r.stderr))

# 4. Two instances on one state directory: the second exits 4 naming the first's PID; once
#    the first is gone the directory is free again (the kernel drops the lock).
sd4 = os.path.join(d, "shared")
first = subprocess.Popen([iiotgw(), "-r", DEFAULT_RULE, "--mqtt", "none", "-s", "stdin",
                          "--state-dir", sd4], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=cwd)
try:
    check(wait_for(lambda: os.path.exists(os.path.join(sd4, "iiotgw.lock")) and
                   open(os.path.join(sd4, "iiotgw.lock")).read().strip() == str(first.pid), 10),
          "the lock file does not hold the first instance's PID")
    r = run(["-r", DEFAULT_RULE, "--mqtt", "none", "-s", "stdin", "--state-dir", sd4],
            input="", cwd=cwd)
    check(r.returncode == 4 and ("PID %d" % first.pid) in r.stderr,
          "second instance: exit %d (want 4, naming PID %d): %s"
          % (r.returncode, first.pid, r.stderr))
    r = run(["--check", "-r", DEFAULT_RULE, "-s", "stdin", "--state-dir", sd4], cwd=cwd)
    check(r.returncode == 0 and ("PID %d" % first.pid) in r.stderr,
          "--check of a running instance's config: exit %d, want 0 and a note naming PID %d: %s"
          % (r.returncode, first.pid, r.stderr))
finally:
    first.stdin.close()
    stop_process(first, 10)
first.stderr.read()
first.stderr.close()
r = run(["-r", DEFAULT_RULE, "--mqtt", "none", "-s", "stdin", "--state-dir", sd4], input="",
        cwd=cwd)
check(r.returncode == 0, "after the holder exited the state directory must be free: exit %d %s"
      % (r.returncode, r.stderr))

# 5. The default rule is the installed one, never rules/default.lua relative to the working
#    directory; missing, it is an error naming the path and -r.
os.makedirs(os.path.join(cwd, "rules"))
with open(os.path.join(cwd, "rules", "default.lua"), "w") as f:
    f.write("function on_packet(p) end\n")
r = run(["--check", "-s", "stdin"], cwd=cwd)
installed = "/usr/share/iiotgw/rules/default.lua"
if os.path.exists(installed):
    print("note: %s is installed; only checking that it is the one used" % installed)
    check("rules/default.lua" not in r.stdout or installed in r.stdout, r.stdout + r.stderr)
else:
    check(r.returncode == 1 and installed in r.stderr and "-r" in r.stderr,
          "a missing default rule must be an error naming %s and -r: exit %d %s"
          % (installed, r.returncode, r.stderr))

# 6. Without -c the config named by IIOTGW_CONFIG (standing in for the installed
#    /etc/iiotgw/iiotgw.conf) is read and that is logged; -c none reads nothing.
conf = os.path.join(d, "gw.conf")
with open(conf, "w") as f:
    f.write('rules = "%s"\nsources = { "file:%s" }\nmqtt = { url = "none" }\nprefix = "fromconf"\n'
            % (DEFAULT_RULE, data))
r = run(["--dry-run"], cwd=cwd, env=env_with(IIOTGW_CONFIG=conf))
check(r.returncode == 0 and "event=config_default file=%s" % conf in r.stderr and
      "PUBLISH fromconf/" in r.stdout,
      "the default config file was not read: exit %d %s" % (r.returncode, r.stderr))
r = run(["--dry-run", "-c", "none", "-r", DEFAULT_RULE, "-s", "file:" + data], cwd=cwd,
        env=env_with(IIOTGW_CONFIG=conf))
check(r.returncode == 0 and "config_default" not in r.stderr and "PUBLISH iiot/" in r.stdout,
      "-c none must read no config file: exit %d %s" % (r.returncode, r.stderr))
check(os.listdir(cwd) == ["rules"], "stray files in the working directory: %s" % os.listdir(cwd))
print("ok: state directory defaults, lock, spool errors, default rule and config")
