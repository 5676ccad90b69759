"""test_dist.py — the packaged data in docs/dist/ is valid before any package is built.

    test_dist.py IIOTGW_BIN SOURCE_DIR

- iiotgw.service: `systemd-analyze verify` on a copy whose ExecStart= names the built binary
  (the installed unit is verified as is by test_deb.py), with MANPATH pointing at the man page
  so its Documentation=man:iiotgw(8) check runs too. Any message fails, warnings included
  (verify exits 0 on an unknown key). A deliberately broken copy must make verify complain, so
  this check cannot pass vacuously in a container without systemd as PID 1.
- The unit keeps the service contract: Type=notify with a watchdog, the iiotgw user, state and
  runtime directories, reload by SIGHUP, the sandbox settings.
- iiotgw.conf passes `iiotgw --check` (its rule path redirected to the source tree's copy).
- The maintainer scripts parse (sh -n) and are executable; conffiles lists the config.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


REQUIRED = [
    "Type=notify", "WatchdogSec=", "User=iiotgw", "Group=iiotgw", "SupplementaryGroups=dialout ",
    "StateDirectory=iiotgw", "RuntimeDirectory=iiotgw", "Restart=on-failure",
    "ExecReload=/bin/kill -HUP $MAINPID", "ExecStart=/usr/bin/iiotgw -c /etc/iiotgw/iiotgw.conf",
    "Documentation=man:iiotgw(8)", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "DevicePolicy=closed",
    "DeviceAllow=char-ttyACM rw", "DeviceAllow=char-ttyUSB rw", "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
    "LockPersonality=yes", "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service",
    "WantedBy=multi-user.target",
]


def verify(unit_path, manpath):
    env = dict(os.environ, MANPATH=manpath, SYSTEMD_LOG_COLOR="0")
    r = run(["systemd-analyze", "verify", unit_path], env=env, cwd=os.path.dirname(unit_path))
    return r.returncode, (r.stdout + r.stderr).strip()


def main():
    binary, src = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    dist = os.path.join(src, "docs", "dist")
    unit = open(os.path.join(dist, "iiotgw.service")).read()

    lines = [l.strip() for l in unit.splitlines()]
    for want in REQUIRED:
        if not any(l == want.strip() or l.startswith(want) for l in lines):
            fail("iiotgw.service lacks a line %r" % want)
    if "CapabilityBoundingSet=" not in lines:
        fail("iiotgw.service lacks an empty CapabilityBoundingSet= (no capabilities)")

    if not shutil.which("systemd-analyze"):
        fail("systemd-analyze not found (Debian package systemd)")
    else:
        with tempfile.TemporaryDirectory(prefix="iiotgw-dist.") as tmp:
            os.makedirs(os.path.join(tmp, "man", "man8"))
            shutil.copy(os.path.join(src, "docs", "iiotgw.8"),
                        os.path.join(tmp, "man", "man8", "iiotgw.8"))
            manpath = os.path.join(tmp, "man")
            copy = re.sub(r"^ExecStart=/usr/bin/iiotgw", "ExecStart=" + binary, unit, flags=re.M)
            path = os.path.join(tmp, "iiotgw.service")
            open(path, "w").write(copy)
            rc, out = verify(path, manpath)
            if rc != 0 or out:
                fail("systemd-analyze verify iiotgw.service (rc %d):\n%s" % (rc, out))
            # Negative control: an unknown key and bad device rights must be reported.
            bad = copy.replace("WatchdogSec=", "WatchdogSecs=").replace(
                "DeviceAllow=char-ttyUSB rw", "DeviceAllow=char-ttyUSB rwz")
            open(path, "w").write(bad)
            rc, out = verify(path, manpath)
            if "WatchdogSecs" not in out or "rwz" not in out:
                fail("systemd-analyze verify did not report the broken copy: rc %d %r"
                     % (rc, out))

    with tempfile.TemporaryDirectory(prefix="iiotgw-dist.") as tmp:
        conf = open(os.path.join(dist, "iiotgw.conf")).read()
        if 'rules = "/usr/share/iiotgw/rules/default.lua"' not in conf:
            fail("iiotgw.conf does not set rules to /usr/share/iiotgw/rules/default.lua")
        r = run([binary, "--check", "-c", os.path.join(dist, "iiotgw.conf"),
                 "-o", "rules=" + os.path.join(src, "rules", "default.lua"),
                 "--state-dir", os.path.join(tmp, "state")], cwd=tmp)
        if r.returncode != 0:
            fail("iiotgw --check -c docs/dist/iiotgw.conf: rc %d\n%s%s"
                 % (r.returncode, r.stdout, r.stderr))

    for script in ("postinst", "prerm", "postrm"):
        p = os.path.join(dist, script)
        if not os.access(p, os.X_OK):
            fail("docs/dist/%s is not executable" % script)
        if not open(p).readline().startswith("#!/bin/sh"):
            fail("docs/dist/%s does not start with #!/bin/sh" % script)
        r = run(["sh", "-n", p])
        if r.returncode != 0:
            fail("sh -n docs/dist/%s: %s" % (script, r.stderr.strip()))
    conffiles = open(os.path.join(dist, "conffiles")).read().split()
    if conffiles != ["/etc/iiotgw/iiotgw.conf"]:
        fail("docs/dist/conffiles lists %r" % conffiles)

    if failures:
        print("%d problem(s)" % len(failures))
        return 1
    print("OK: unit verifies, example config checks, maintainer scripts parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
