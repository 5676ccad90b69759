"""Configuration edge cases where --check and a real start must agree (src/main.c,
src/config.c): what --check accepts, the daemon runs, and what it refuses, the daemon refuses
with the same exit code (docs/configuration.md: 1 = configuration error)."""
import os

from gwtest import DEFAULT_RULE, check, run, tmpdir

d = tmpdir()
data = os.path.join(d, "in.jsonl")
with open(data, "w") as f:
    f.write('{"ts":1}\n')
base = ["-r", DEFAULT_RULE, "--deadletter", "none"]

# An empty mqtt.url means "none" for the daemon (config.c, gateway.c); --check agrees.
r = run(["--check", "--mqtt", "", "-s", "stdin"] + base)
check(r.returncode == 0, "--check --mqtt '' must pass like the daemon's start: %s" % r.stderr)
r = run(["--dry-run", "--mqtt", "", "-s", "file:" + data] + base)
check(r.returncode == 0, "dry run with --mqtt '' exit %d: %s" % (r.returncode, r.stderr))

# Source names must be unique (docs/sources.md), also against a default name (file0).
for srcs in (["a=file:" + data, "a=stdin"], ["file:" + data, "file0=stdin"]):
    args = []
    for spec in srcs:
        args += ["-s", spec]
    r = run(["--check"] + args + base)
    check(r.returncode == 1 and "already used" in r.stderr,
          "--check must refuse duplicate source names %r: exit %d %s" % (srcs, r.returncode, r.stderr))
    r = run(["--dry-run"] + args + base, input="")
    check(r.returncode == 1 and "already used" in r.stderr,
          "a start must refuse duplicate source names %r: exit %d %s" % (srcs, r.returncode, r.stderr))
r = run(["--check", "-s", "file:" + data, "-s", "stdin"] + base)
check(r.returncode == 0, "distinct default names are fine: %s" % r.stderr)

# The config file's sandbox caps memory as well as instructions: doubling a string is one
# instruction per step, so only the cap stops it (here at 64 MiB; 2^28 bytes = 256 MiB).
bomb = os.path.join(d, "bomb.lua")
with open(bomb, "w") as f:
    f.write('local s = "x"\nfor i = 1, 28 do s = s .. s end\nprefix = "never"\n')
r = run(["--check", "-c", bomb] + base)
check(r.returncode == 1 and "bomb.lua" in r.stderr and "memory" in r.stderr,
      "a config file that allocates without bound must be refused: exit %d %s"
      % (r.returncode, r.stderr))

print("ok: --check and the daemon agree on the edge cases")
