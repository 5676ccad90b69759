"""test_deb.py — build the Debian package, lint it, install it on this machine, purge it.

    test_deb.py CPACK BUILD_DIR INSTALL_PREFIX VERSION DEB_VERSION

1. `cpack -G DEB` from the build directory into a temporary directory;
2. lintian: every line is printed, any E: line or hardening-* tag fails the test;
3. the control data: Depends from dpkg-shlibdeps (+ adduser), the conffile, the file list;
4. `dpkg -i`: the system user, the state directory, the unit enabled by deb-systemd-helper,
   `iiotgw --version`, `iiotgw --check -c /etc/iiotgw/iiotgw.conf`, a dry run as user iiotgw
   of the stock and the module-based example rules (require() from /usr/share/iiotgw/lua),
   `systemd-analyze verify` on the installed unit;
5. reinstall over a locally edited conffile: the edit survives;
6. `dpkg --remove`: programs gone, conffile, user and state kept; `dpkg --purge`: nothing of
   the package is left (files, /etc/iiotgw, /var/lib/iiotgw, user and group, enable symlink,
   deb-systemd-helper state).

Needs root (skipped otherwise). Refuses to run, with a message, when a package iiotgw or a user
or group iiotgw already exists: the test must not clobber an installation it did not make.
Whatever happens after `dpkg -i` (failure, exception, SIGTERM from ctest), the package is
purged before exit. Concurrent runs from other checkouts are serialised with flock(2) on
/var/lib/dpkg (dpkg itself locks files inside it with fcntl, so the two do not interfere);
a dpkg lock held by apt or another dpkg is waited for, up to LOCK_WAIT seconds.
"""
import fcntl
import fnmatch
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

SKIP = 77
LOCK_WAIT = 300
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PKG = "iiotgw"

EXPECTED_FILES = {
    "/usr/bin/iiotgw",
    "/etc/iiotgw/iiotgw.conf",
    "/lib/systemd/system/iiotgw.service",
    "/usr/share/iiotgw/rules/default.lua",
    "/usr/share/iiotgw/rules/examples/alerts-with-modules.lua",
    "/usr/share/iiotgw/lua/alerts.lua",
    "/usr/share/iiotgw/lua/smooth.lua",
    "/usr/share/man/man8/iiotgw.8.gz",
    "/usr/share/doc/iiotgw/copyright",
    "/usr/share/doc/iiotgw/changelog.Debian.gz",
    "/usr/share/doc/iiotgw/configuration.md",
    "/usr/share/doc/iiotgw/rules.md",
    "/usr/share/doc/iiotgw/sources.md",
    "/usr/share/doc/iiotgw/reliability.md",
}
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/iiotgw.service"
DSH_STATE = "/var/lib/systemd/deb-systemd-helper-enabled"
SHLIB_DEPS = ["libc6", "liblua5.4-0", "libmosquitto1", "libcurl4", "libcjson1", "libev4",
              "libsystemd0", "libmicrohttpd12", "libncursesw6", "libtinfo6", "libssl3",
              "zlib1g", "adduser"]
# One packet in the receiver's RTT format: the stock rule publishes 9 metrics from it.
PACKET = ('[INFO] JSON sent via VCP: {"ts":14385,"n1":{"t":27.6,"h":54.1,"g":84190},'
          '"n2":{"t":26.8,"h":48.8},"rssi":-39,"snr":13,"rx":1,"crc":0}\n')

failures = []
installed_by_us = False


class Abort(Exception):
    pass


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def fatal(msg):
    fail(msg)
    raise Abort(msg)


def log(msg):
    print(msg, flush=True)


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def pkg_status():
    """dpkg's status of the package: 'not-installed' when dpkg does not know it."""
    r = run(["dpkg-query", "-W", "-f=${db:Status-Status}", PKG])
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "not-installed"


def dpkg(*args):
    """Run dpkg, waiting while another dpkg/apt holds its lock. Returns the CompletedProcess."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        # A signal must not kill dpkg half-way (subprocess.run kills its child when an
        # exception interrupts it): hold signals until dpkg is done, then handle them.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            r = run(["dpkg", *args], timeout=300,
                    env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        locked = r.returncode != 0 and re.search(r"lock|locked", r.stderr, re.I)
        if not locked:
            return r
        if time.monotonic() > deadline:
            fatal("dpkg %s: the dpkg database stayed locked for %d s (apt or dpkg running "
                  "elsewhere?): %s" % (" ".join(args), LOCK_WAIT, r.stderr.strip()))
        log("dpkg is locked by another process; waiting")
        time.sleep(3)


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def purge_if_ours():
    global installed_by_us
    if not installed_by_us:
        return
    if pkg_status() != "not-installed":
        r = dpkg("--purge", PKG)
        if r.returncode != 0:
            print("cleanup: dpkg --purge iiotgw failed: %s%s" % (r.stdout, r.stderr), flush=True)
            return
    installed_by_us = False


def on_signal(signum, _frame):
    fatal("interrupted by signal %d; purging what was installed" % signum)


def build_deb(cpack, build_dir, out):
    r = run([cpack, "--config", os.path.join(build_dir, "CPackConfig.cmake"), "-G", "DEB",
             "-B", out], timeout=600, cwd=build_dir)
    if r.returncode != 0:
        fatal("cpack -G DEB failed (rc %d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    if len(debs) != 1:
        fatal("cpack produced %r, expected one .deb" % debs)
    return os.path.join(out, debs[0])


def check_lintian(deb):
    # lintian leaves its perl MLDBM cache (mldbm-elf-*) in $TMPDIR: give it one we remove.
    with tempfile.TemporaryDirectory(prefix="iiotgw-lintian.") as tmp:
        r = run(["lintian", "--info", "--display-info", deb], timeout=300,
                env=dict(os.environ, TMPDIR=tmp))
    tags = [l for l in r.stdout.splitlines() if re.match(r"^[EWIPXO]: ", l)]
    log("lintian: %d tag(s)" % len(tags))
    for l in tags:
        log("  " + l)
    errors = [l for l in tags if l.startswith("E: ")]
    if errors:
        fail("lintian reports %d error(s):\n%s" % (len(errors), "\n".join(errors)))
    # The binary is built hardened (CMakeLists.txt: fortify, stack protector, relro, bindnow,
    # PIE); lintian reports a missing piece as an I: or W: hardening-* tag.
    hardening = [l for l in tags if re.match(r"^[EWI]: \S+ hardening-", l)]
    if hardening:
        fail("lintian finds the binary not hardened:\n%s" % "\n".join(hardening))
    # lintian exits non-zero on its own failures too (unreadable package...), not only on E:.
    if r.returncode != 0 and not errors:
        fail("lintian failed (rc %d): %s" % (r.returncode, r.stderr.strip()))


def check_control(deb, deb_version):
    info = run(["dpkg-deb", "-f", deb]).stdout
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", info, re.M))
    if fields.get("Package") != PKG or fields.get("Version") != deb_version:
        fail("control: Package %r Version %r, expected iiotgw %s"
             % (fields.get("Package"), fields.get("Version"), deb_version))
    deps = [d.strip().split()[0] for d in fields.get("Depends", "").split(",") if d.strip()]
    for want in SHLIB_DEPS:
        if want not in deps:
            fail("Depends lacks %s: %s" % (want, fields.get("Depends")))
    with tempfile.TemporaryDirectory(prefix="iiotgw-ctrl.") as ctl:
        run(["dpkg-deb", "-e", deb, ctl])
        conffiles = open(os.path.join(ctl, "conffiles")).read().split() \
            if os.path.exists(os.path.join(ctl, "conffiles")) else []
        if conffiles != ["/etc/iiotgw/iiotgw.conf"]:
            fail("conffiles is %r" % conffiles)
        for s in ("postinst", "prerm", "postrm"):
            p = os.path.join(ctl, s)
            if not os.path.exists(p) or not os.stat(p).st_mode & stat.S_IXUSR:
                fail("control script %s missing or not executable" % s)
    listing = run(["dpkg-deb", "-c", deb]).stdout
    files = set()
    for line in listing.splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("d"):
            files.add(parts[-1].lstrip("."))
        if parts and parts[1] != "root/root":
            fail("not owned by root/root in the package: %s" % line)
    for f in sorted(EXPECTED_FILES - files):
        fail("missing from the package: %s" % f)
    for f in sorted(files - EXPECTED_FILES):
        fail("unexpected file in the package (add it to EXPECTED_FILES if intended): %s" % f)
    log("package files:\n" + listing)


def dpkg_filtered(path):
    """True when dpkg's path-exclude/path-include options (minimised images drop man pages
    and docs that way) keep `path` from being unpacked. The last matching option wins."""
    verdict = False
    for cfg in ["/etc/dpkg/dpkg.cfg"] + sorted(glob.glob("/etc/dpkg/dpkg.cfg.d/*")):
        try:
            lines = open(cfg).read().splitlines()
        except OSError:
            continue
        for line in lines:
            m = re.match(r"^\s*(path-exclude|path-include)[\s=]+(\S+)", line)
            if m and fnmatch.fnmatchcase(path, m.group(2)):
                verdict = m.group(1) == "path-exclude"
    return verdict


def check_installed(version):
    st = pkg_status()
    if st != "installed":
        fatal("after dpkg -i the package status is %r" % st)
    for f in sorted(EXPECTED_FILES):
        if dpkg_filtered(f):
            log("not checked (dpkg path-exclude on this machine): " + f)
        elif not os.path.isfile(f):
            fail("installed file missing: %s" % f)
    if not os.access("/usr/bin/iiotgw", os.X_OK):
        fail("/usr/bin/iiotgw is not executable")

    try:
        pw = pwd.getpwnam(PKG)
        gr = grp.getgrnam(PKG)
    except KeyError:
        fatal("postinst did not create the user and group iiotgw")
    if pw.pw_uid >= 1000 or pw.pw_gid != gr.gr_gid:
        fail("user iiotgw: uid %d gid %d (want a system uid and its own group %d)"
             % (pw.pw_uid, pw.pw_gid, gr.gr_gid))
    if pw.pw_dir != "/var/lib/iiotgw" or not pw.pw_shell.endswith("nologin"):
        fail("user iiotgw: home %s shell %s" % (pw.pw_dir, pw.pw_shell))
    try:
        sd = os.stat("/var/lib/iiotgw")
        if sd.st_uid != pw.pw_uid or stat.S_IMODE(sd.st_mode) != 0o750:
            fail("/var/lib/iiotgw: uid %d mode %o" % (sd.st_uid, stat.S_IMODE(sd.st_mode)))
    except FileNotFoundError:
        fail("postinst did not create /var/lib/iiotgw")
    if not os.path.islink(WANTS_LINK):
        fail("deb-systemd-helper did not enable the unit (%s missing)" % WANTS_LINK)
    r = run(["dpkg-query", "-W", "-f=${Conffiles}", PKG])
    if "/etc/iiotgw/iiotgw.conf" not in r.stdout:
        fail("dpkg does not list /etc/iiotgw/iiotgw.conf as a conffile: %r" % r.stdout)

    r = run(["/usr/bin/iiotgw", "--version"])
    if r.returncode != 0 or r.stdout.strip() != "iiotgw " + version:
        fail("/usr/bin/iiotgw --version: rc %d %r" % (r.returncode, r.stdout))
    # No path option at all: the installed daemon finds /etc/iiotgw/iiotgw.conf by itself (and
    # says so), the rules and modules under /usr/share/iiotgw, its state in /var/lib/iiotgw.
    bare = {k: v for k, v in os.environ.items()
            if k not in ("IIOTGW_CONFIG", "STATE_DIRECTORY", "XDG_STATE_HOME")}
    r = run(["/usr/bin/iiotgw", "--check"], cwd="/", env=bare)
    if r.returncode != 0:
        fail("iiotgw --check (no options): rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    elif "config_default file=/etc/iiotgw/iiotgw.conf" not in r.stderr:
        fail("iiotgw --check did not say it read /etc/iiotgw/iiotgw.conf:\n" + r.stderr)
    else:
        log(r.stdout.strip())

    # As the service user, from the stock config, no network: the packaged rules and modules
    # must be readable by iiotgw and found where the config and the require path say.
    for rule, want in (("/usr/share/iiotgw/rules/default.lua", "PUBLISH iiot/node1/temperature "),
                       ("/usr/share/iiotgw/rules/examples/alerts-with-modules.lua",
                        "PUBLISH iiot/node1/temperature_avg ")):
        r = run(["runuser", "-u", PKG, "--", "/usr/bin/iiotgw", "-c", "/etc/iiotgw/iiotgw.conf",
                 "-r", rule, "--dry-run", "-s", "stdin"], input=PACKET, cwd="/")
        publishes = [l for l in r.stdout.splitlines() if l.startswith("PUBLISH ")]
        if "require: module" in r.stderr and "/usr/share/iiotgw/lua/" not in r.stderr:
            fail("the daemon's built-in require path does not include /usr/share/iiotgw/lua, "
                 "where the package puts the modules:\n" + r.stderr.strip())
        elif r.returncode != 0 or not any(l.startswith(want) for l in publishes):
            fail("dry run of %s as user iiotgw: rc %d, no %r\n%s%s"
                 % (rule, r.returncode, want, r.stdout, r.stderr))
        else:
            log("dry run %s as iiotgw: %d publishes" % (os.path.basename(rule), len(publishes)))

    man_flag = ["--man=no"] if dpkg_filtered("/usr/share/man/man8/iiotgw.8.gz") else []
    r = run(["systemd-analyze", "verify", *man_flag, "/lib/systemd/system/iiotgw.service"], cwd="/",
            env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or out:
        fail("systemd-analyze verify on the installed unit (rc %d):\n%s" % (r.returncode, out))
    r = run(["man", "-w", "iiotgw"])
    if dpkg_filtered("/usr/share/man/man8/iiotgw.8.gz"):
        pass
    elif r.stdout.strip() != "/usr/share/man/man8/iiotgw.8.gz":
        fail("man -w iiotgw: %r %r" % (r.stdout, r.stderr))


def check_gone_after_purge():
    st = pkg_status()
    if st != "not-installed":
        fail("after dpkg --purge the status is %r" % st)
    for f in sorted(EXPECTED_FILES) + ["/etc/iiotgw", "/var/lib/iiotgw", "/usr/share/iiotgw",
                                       "/usr/share/doc/iiotgw", WANTS_LINK]:
        if os.path.lexists(f):
            fail("left behind after purge: %s" % f)
    if os.path.isdir(DSH_STATE):
        left = [f for f in os.listdir(DSH_STATE) if "iiotgw" in f]
        left += [os.path.join(d, f) for d in os.listdir(DSH_STATE)
                 if os.path.isdir(os.path.join(DSH_STATE, d))
                 for f in os.listdir(os.path.join(DSH_STATE, d)) if "iiotgw" in f]
        if left:
            fail("deb-systemd-helper state left behind: %r" % left)
    if user_exists(PKG):
        fail("user iiotgw still exists after purge")
    if group_exists(PKG):
        fail("group iiotgw still exists after purge")


def main():
    global installed_by_us
    cpack, build_dir, prefix, version, deb_version = sys.argv[1:6]
    if os.geteuid() != 0:
        print("SKIP: installs a package, needs root")
        return SKIP
    missing = [t for t in ("dpkg-shlibdeps", "lintian", "systemd-analyze", "groff", "man",
                           "runuser", "adduser") if not shutil.which(t)]
    if missing:
        fail("missing tools %s (Debian packages dpkg-dev, lintian, systemd, groff-base, "
             "man-db, util-linux, adduser; tests/setup.sh installs them)" % " ".join(missing))
        return 1
    if prefix != "/usr":
        fail("the build directory is configured with CMAKE_INSTALL_PREFIX=%s; the package "
             "needs /usr (the daemon's compiled-in paths follow it): reconfigure with "
             "cmake -B %s -DCMAKE_INSTALL_PREFIX=/usr" % (prefix, build_dir))
        return 1

    for s in SIGNALS:
        signal.signal(s, on_signal)
    lock = os.open("/var/lib/dpkg", os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fatal("another package test holds the lock on /var/lib/dpkg for %d s"
                          % LOCK_WAIT)
                time.sleep(2)

        st = pkg_status()
        if st != "not-installed":
            fatal("a package iiotgw is already on this machine (dpkg status %r); this test "
                  "installs and purges its own build, so remove it first: dpkg --purge iiotgw"
                  % st)
        for what, present in (("user", user_exists(PKG)), ("group", group_exists(PKG))):
            if present:
                fatal("a %s iiotgw already exists; this test checks that the package creates "
                      "and removes it, so it refuses to run" % what)
        for d in ("/etc/iiotgw", "/var/lib/iiotgw", "/usr/share/iiotgw"):
            if os.path.lexists(d):
                fatal("%s already exists (an installation not made by dpkg?); refusing to run"
                      % d)

        with tempfile.TemporaryDirectory(prefix="iiotgw-deb.") as out:
            deb = build_deb(cpack, build_dir, out)
            log("built " + deb)
            check_lintian(deb)
            check_control(deb, deb_version)

            installed_by_us = True  # from here on, whatever happens, purge before exit
            r = dpkg("-i", deb)
            if r.returncode != 0:
                fatal("dpkg -i failed (rc %d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
            check_installed(version)

            # Reinstall (postinst configure with the old version: the upgrade path) over an
            # edited conffile: dpkg keeps the local edit, the user is not created twice.
            with open("/etc/iiotgw/iiotgw.conf", "a") as f:
                f.write("-- local edit kept across upgrades\n")
            r = dpkg("-i", deb)
            if r.returncode != 0:
                fail("reinstall failed (rc %d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
            if "-- local edit kept" not in open("/etc/iiotgw/iiotgw.conf").read():
                fail("reinstalling replaced the locally edited conffile")

            r = dpkg("--remove", PKG)
            if r.returncode != 0:
                fail("dpkg --remove failed: %s%s" % (r.stdout, r.stderr))
            if pkg_status() != "config-files":
                fail("after --remove the status is %r, want config-files" % pkg_status())
            if os.path.exists("/usr/bin/iiotgw") or os.path.exists("/usr/share/iiotgw"):
                fail("dpkg --remove left /usr/bin/iiotgw or /usr/share/iiotgw")
            if not os.path.isfile("/etc/iiotgw/iiotgw.conf") or not user_exists(PKG):
                fail("dpkg --remove must keep the conffile and the user (until purge)")

            r = dpkg("--purge", PKG)
            if r.returncode != 0:
                fail("dpkg --purge failed: %s%s" % (r.stdout, r.stderr))
            else:
                installed_by_us = False
            check_gone_after_purge()
    except Abort:
        pass
    finally:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)  # the clean-up itself is not interruptible
        purge_if_ours()
        os.close(lock)

    if failures:
        print("%d problem(s)" % len(failures))
        return 1
    print("OK: package built, lintian clean of errors, installed, ran, removed and purged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
