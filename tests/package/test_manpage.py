"""test_manpage.py — docs/iiotgw.8 documents exactly the options the daemon has.

    test_manpage.py IIOTGW_BIN SOURCE_DIR VERSION

Three lists of options must agree, both ways, so a new option without documentation (or a
documented option that is gone) fails:
  1. the getopt tables of src/main.c (short option string, long_opts[]), with argument or not;
  2. the option lines of `iiotgw --help` (short, long, argument name);
  3. the tags of the OPTIONS section of the rendered man page (same spelling and argument name).
Also: every option appears in SYNOPSIS, every environment variable the sources read
(getenv) is under ENVIRONMENT, the .TH line carries the version `iiotgw --version` prints, and
the page renders without a single warning through groff -ww and through `man --warnings`
(what lintian runs), and lexgrog can read its NAME line.
"""
import glob
import os
import re
import subprocess
import sys

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


# "  -c, --config FILE   text", "      --mqtt URL   text", "  -h, --help   text", "  -x ARG  text",
# "  -o, --set KEY=VALUE  text", "      --metrics ADDR:PORT  text"
OPT_LINE = re.compile(
    r"^ +(?:(-[A-Za-z0-9])(?:, |(?= )|$))?(--[a-z0-9][a-z0-9-]*)?(?: ([A-Z][A-Za-z0-9_]*(?:[=:][A-Z][A-Za-z0-9_]*)?))?(?: {2,}|$)"
)


def parse_option_lines(lines, what):
    """Option tuples (short, long, metavar) from option lines; None for a missing part."""
    opts = set()
    for line in lines:
        m = OPT_LINE.match(line)
        if not m or not (m.group(1) or m.group(2)):
            continue
        opts.add((m.group(1), m.group(2), m.group(3)))
    if not opts:
        fail("no options found in " + what)
    return opts


def help_options(binary):
    r = run([binary, "--help"])
    if r.returncode != 0:
        fail("iiotgw --help exited %d" % r.returncode)
    # Option lines start with two spaces then '-', or six spaces then '--' (no short form).
    lines = [l for l in r.stdout.splitlines() if re.match(r"^ {2}-|^ {6}--", l)]
    return parse_option_lines(lines, "iiotgw --help")


def render(page, width=200):
    r = run(["groff", "-man", "-Tutf8", "-rLL=%dn" % width, "-P-cbou", page],
            env=dict(os.environ, LC_ALL="C.UTF-8"))
    if r.returncode != 0:
        fail("groff could not render %s: %s" % (page, r.stderr.strip()))
    return r.stdout.splitlines()


def sections(lines):
    """Section name -> its lines, from a rendered page (headings start in column 0)."""
    out, cur = {}, None
    for l in lines:
        if l and not l[0].isspace() and l.strip() == l.strip().upper() and len(l.split()) <= 3:
            cur = l.strip()
            out[cur] = []
        elif cur:
            out[cur].append(l)
    return out


def man_options(secs):
    opt_lines = secs.get("OPTIONS", [])
    if not opt_lines:
        fail("the man page has no OPTIONS section")
        return set()
    # .TP tags sit at the section indent (7 columns); descriptions are indented further.
    indent = min(len(l) - len(l.lstrip()) for l in opt_lines if l.strip())
    tags = [l for l in opt_lines if l.strip() and len(l) - len(l.lstrip()) == indent]
    return parse_option_lines(tags, "the OPTIONS section of the man page")


def source_options(src_dir):
    """(short, long, has_arg) from main.c's getopt_long() short string and long_opts[]."""
    text = open(os.path.join(src_dir, "src", "main.c")).read()
    shorts = set(re.findall(r'getopt_long\(argc, argv, "([^"]*)"', text))
    if len(shorts) != 1:
        fail("main.c: expected one getopt_long option string, found %r" % sorted(shorts))
        return set()
    s = shorts.pop()
    short_arg = {}
    for i, ch in enumerate(s):
        if ch != ":":
            short_arg[ch] = i + 1 < len(s) and s[i + 1] == ":"
    table = re.search(r"long_opts\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    if not table:
        fail("main.c: long_opts[] not found")
        return set()
    out = set()
    for name, arg, val in re.findall(r'\{"([a-z0-9-]+)",\s*(\w+),\s*NULL,\s*([^}\s]+)\s*\}',
                                     table.group(1)):
        short = None
        m = re.fullmatch(r"'(.)'", val)
        if m:
            short = "-" + m.group(1)
            short_arg.pop(m.group(1), None)
        out.add((short, "--" + name, arg == "required_argument"))
    for ch, has in short_arg.items():
        out.add(("-" + ch, None, has))
    return out


def main():
    binary, src_dir, version = sys.argv[1], sys.argv[2], sys.argv[3]
    page = os.path.join(src_dir, "docs", "iiotgw.8")

    helps = help_options(binary)
    rendered = render(page)
    secs = sections(rendered)
    mans = man_options(secs)
    srcs = source_options(src_dir)

    for o in sorted(helps - mans, key=str):
        fail("in --help but not in the man page OPTIONS (or spelled differently): %s" % (o,))
    for o in sorted(mans - helps, key=str):
        fail("in the man page OPTIONS but not in --help (or spelled differently): %s" % (o,))
    help_args = {(s, l, m is not None) for s, l, m in helps}
    for o in sorted(srcs - help_args, key=str):
        fail("in main.c's getopt tables but not in --help: (short, long, has_arg) = %s" % (o,))
    for o in sorted(help_args - srcs, key=str):
        fail("in --help but not in main.c's getopt tables: (short, long, has_arg) = %s" % (o,))

    synopsis = " ".join(secs.get("SYNOPSIS", []))
    for s, l, _ in sorted(helps, key=str):
        if not any(x and re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(x), synopsis)
                   for x in (s, l)):
            fail("option %s is not in the SYNOPSIS" % (l or s))

    env_text = " ".join(secs.get("ENVIRONMENT", []))
    for f in sorted(glob.glob(os.path.join(src_dir, "src", "*.c"))):
        for var in sorted(set(re.findall(r'getenv\("([A-Z_][A-Z0-9_]*)"\)', open(f).read()))):
            if not re.search(r"\b%s\b" % var, env_text):
                fail("%s reads $%s, which the man page's ENVIRONMENT does not describe"
                     % (os.path.basename(f), var))

    r = run([binary, "--version"])
    v = r.stdout.strip()
    if v != "iiotgw " + version:
        fail("iiotgw --version prints %r, expected 'iiotgw %s'" % (v, version))
    th = next((l for l in open(page) if l.startswith(".TH ")), "")
    if '"iiotgw %s"' % version not in th:
        fail("the .TH line does not name \"iiotgw %s\": %s" % (version, th.strip()))

    r = run(["groff", "-man", "-ww", "-z", "-Tutf8", page],
            env=dict(os.environ, LC_ALL="C.UTF-8"))
    if r.returncode != 0 or r.stderr.strip():
        fail("groff -man -ww reports: %s" % r.stderr.strip())
    # What lintian's manpages check runs (80 columns, so it also catches unbreakable lines).
    r = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page],
            env=dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80"))
    if r.returncode != 0 or r.stderr.strip():
        fail("man --warnings reports (rc %d): %s" % (r.returncode, r.stderr.strip()))
    r = run(["lexgrog", page])
    if r.returncode != 0 or "iiotgw - " not in r.stdout:
        fail("lexgrog cannot parse the NAME section: %s %s" % (r.stdout, r.stderr))

    if failures:
        print("%d problem(s)" % len(failures))
        return 1
    print("OK: %d options agree between main.c, --help and iiotgw(8); page renders cleanly"
          % len(helps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
