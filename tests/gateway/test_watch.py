"""`iiotgw watch` against a real mosquitto fed by the real gateway: full screen under tmux
(send-keys / capture-pane) the values of each node appear with their age, an alert appears as
FIRING, the rule status and the gateway's figures are shown, the params document when the
gateway publishes one, `q` quits with exit 0 and the terminal is restored (the alternate screen
is left), SIGTERM quits the same way; in line mode (stdout a pipe) one line per message."""
import atexit
import os
import re
import shutil
import signal
import subprocess
import threading
import time

from gwtest import DEFAULT_RULE, check, fail, iiotgw, need_env, tmpdir, unique, wait_for

host, port = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
if not shutil.which("tmux"):
    fail("tmux is not installed (tests/setup.sh installs it)")
prefix = unique("wt")
dprefix = unique("wtdisc")
d = tmpdir()
SOCK = [os.path.join(d, "tmux.sock")]  # our own tmux server, inside the test's directory
url = "mqtt://%s:%s" % (host, port)


def tmux(*args, check_rc=True):

    r = subprocess.run(["tmux", "-S", SOCK[0]] + list(args), capture_output=True, text=True,
                       timeout=10)
    if check_rc and r.returncode != 0:
        fail("tmux %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def screen():
    return tmux("capture-pane", "-p", "-t", "w")


def wait_screen(pattern, timeout=10):
    got = wait_for(lambda: re.search(pattern, screen(), re.M), timeout, 0.1)
    if not got:
        fail("screen never showed %r:\n%s" % (pattern, screen()))


gw = subprocess.Popen([iiotgw(), "-r", DEFAULT_RULE, "-s", "stdin", "--prefix", prefix,
                       "--mqtt", url, "--deadletter", "none", "-o", "stats_interval=0.5",
                       "-o", "ha_discovery=true", "-o", "ha_discovery_prefix=" + dprefix],
                      stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
gwlog = []
threading.Thread(target=lambda: [gwlog.append(l) for l in gw.stderr], daemon=True).start()


def send(line):
    gw.stdin.write(line + "\n")
    gw.stdin.flush()


def cleanup():
    subprocess.run(["tmux", "-S", SOCK[0], "kill-server"], capture_output=True)
    if gw.poll() is None:
        gw.send_signal(signal.SIGTERM)
        gw.wait(15)
    # the default rule's retained topics: leave the broker as found
    r = subprocess.run(["mosquitto_sub", "-h", host, "-p", str(port), "-t", prefix + "/#",
                        "-W", "1", "--retained-only", "-F", "%t"], capture_output=True, text=True)
    r2 = subprocess.run(["mosquitto_sub", "-h", host, "-p", str(port), "-t", dprefix + "/#",
                         "-W", "1", "--retained-only", "-F", "%t"], capture_output=True, text=True)
    for t in set(r.stdout.split()) | set(r2.stdout.split()):
        subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", t, "-r", "-n"])


try:
    wait_for(lambda: any("mqtt_connected" in l for l in gwlog), 10)
    exitf = os.path.join(d, "exit")
    # The console reads broker, prefix and discovery prefix from the gateway's config file;
    # from the discovery messages it learns that signal/ and stats/ topics are node2's.
    conf = os.path.join(d, "iiotgw.conf")
    with open(conf, "w") as f:
        f.write('mqtt = {url = "%s"}\nprefix = "%s"\nha_discovery_prefix = "%s"\n'
                % (url, prefix, dprefix))
    cmd = "%s watch -c %s; echo $? > %s; echo console-ended; sleep 60" % (iiotgw(), conf, exitf)
    tmux("new-session", "-d", "-s", "w", "-x", "120", "-y", "40", cmd)
    wait_screen(r"iiotgw watch .*broker connected")
    wait_screen(r"Rule: ok .*default\.lua")

    # --- values appear, with their age ---------------------------------------------------
    send('{"n1":{"t":21.5,"h":48.2,"g":84190},"n2":{"t":22.0,"h":40.5},'
         '"sig":{"rssi":-41,"snr":9},"sts":{"rx":7,"err":1}}')
    wait_screen(r"^node1 +temperature +21\.5 +\d+s")
    wait_screen(r"^ +rssi +-41 +\d+s")
    wait_screen(r"^ +snr +9 ")
    wait_screen(r"^ +packets_received +7 ")
    scr = screen()
    check(not re.search(r"^(signal|stats) ", scr, re.M),
          "signal/stats shown as nodes although discovery says they are node2's:\n" + scr)
    node2 = scr[scr.index("\nnode2 "):]
    check(re.search(r"^ +rssi ", node2, re.M), "rssi not under node2:\n" + scr)
    wait_screen(r"^node2 +temperature +22\.0 ")
    wait_screen(r"Gateway: packets 1 ")

    # --- an alert appears ----------------------------------------------------------------
    check(not re.search(r"FIRING", screen()), "an alert shown before any fired")
    time.sleep(2.5)  # a counter's rate needs two values at least a second apart (under load too)
    send('{"n1":{"t":40.5},"sts":{"rx":9,"err":1}}')
    wait_screen(r"ALERTS +1 firing")
    wait_screen(r"FIRING +node1/temperature +value 40\.5 +threshold 35")
    wait_screen(r"^node1 +temperature +40\.5 ")
    wait_screen(r"^ +packets_received +9 +\d+s +\+\d+\.\d/min")  # a counter's rate

    # --- the params document, when the gateway publishes one --------------------------------
    doc = subprocess.run(["mosquitto_sub", "-h", host, "-p", str(port), "-t",
                          prefix + "/gateway/params", "-W", "1", "--retained-only", "-C", "1"],
                         capture_output=True, text=True).stdout
    if doc.strip():
        wait_screen(r"temp_high +node1=35 +node2=35")

    # --- a hostile params document does not break the screen --------------------------------
    subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", prefix + "/gateway/params",
                    "-m", '{"params":[{"name":"x","nodes":{}},{"name":"y","nodes":'
                          '{"\\u001b[2J":{"value":1}}},{"nodes":5},7]}'], check=True)
    wait_screen(r"^  y +\^\[|^  y +\s")
    wait_screen(r"iiotgw watch .*broker connected")

    # --- q quits with 0 and restores the terminal -----------------------------------------
    tmux("send-keys", "-t", "w", "q")
    wait_for(lambda: os.path.exists(exitf) and open(exitf).read().strip(), 15)
    check(os.path.exists(exitf), "watch did not exit on q:\n" + screen())
    check(open(exitf).read().strip() == "0", "exit status after q: %s" % open(exitf).read())
    wait_screen(r"console-ended")
    check(tmux("display", "-p", "-t", "w", "#{alternate_on}").strip() == "0",
          "the alternate screen is still on after q")
    check("iiotgw watch" not in screen(), "the console is still on the screen:\n" + screen())
    tmux("kill-server")

    # --- SIGTERM ends it the same way ------------------------------------------------------
    os.unlink(exitf)
    SOCK[0] = os.path.join(d, "tmux2.sock")  # a fresh server: the old one may still be exiting
    tmux("new-session", "-d", "-s", "w", "-x", "100", "-y", "30", cmd)
    wait_screen(r"iiotgw watch .*broker connected")
    pid = subprocess.run(["pgrep", "-f", "watch -c %s$" % conf],
                         capture_output=True, text=True).stdout.split()
    check(len(pid) == 1, "watch process not found: %s" % pid)
    os.kill(int(pid[0]), signal.SIGTERM)
    wait_for(lambda: os.path.exists(exitf) and open(exitf).read().strip(), 15)
    check(os.path.exists(exitf) and open(exitf).read().strip() == "0",
          "exit status after SIGTERM: %s" % (open(exitf).read() if os.path.exists(exitf) else "none"))
    wait_screen(r"console-ended")
    check(tmux("display", "-p", "-t", "w", "#{alternate_on}").strip() == "0",
          "the alternate screen is still on after SIGTERM")
    tmux("kill-server")

    # --- line mode: stdout is a pipe ---------------------------------------------------------
    lm = subprocess.Popen([iiotgw(), "watch", "--mqtt", url, "--prefix", prefix],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    atexit.register(lambda: lm.poll() is None and lm.kill())  # a failed check exits at once
    lines = []
    threading.Thread(target=lambda: [lines.append(l.rstrip("\n")) for l in lm.stdout],
                     daemon=True).start()
    wait_for(lambda: "status online" in lines, 10)
    send('{"n1":{"t":30.0},"sig":{"rssi":-50,"snr":7}}')
    wait_for(lambda: "alert node1/temperature ok value=30 threshold=33" in " ".join(lines) or
             any(l.startswith("alert node1/temperature ok") for l in lines), 10)
    wait_for(lambda: any(l.startswith("stats packets=") for l in lines), 5)
    # Bad input from the broker: escape sequences in payloads (mosquitto refuses them in
    # topics), broken JSON on the gateway's topics, an overlong metric name. Nothing may reach
    # the terminal raw, and the console keeps running.
    for t, m in [(prefix + "/evil/x", "\x1b[31mred\x1b[2J"), (prefix + "/alerts/n/k", "{not json"),
                 (prefix + "/gateway/params", "[1,2"), (prefix + "/gateway/rules", ""),
                 (prefix + "/gateway/stats", "null"), (prefix + "/n9/" + "m" * 300, "1"),
                 (prefix + "/gateway/params",
                  '{"params":[{"name":"x","nodes":{}},{"name":"y","nodes":{"\\u001b[2J":'
                  '{"value":1}}},{"nodes":5},7]}')]:
        subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", t, "-m", m],
                       check=True)
    send('{"n1":{"t":30.5}}')
    check(wait_for(lambda: any(l.startswith("data node1 temperature = 30.5") for l in lines), 5),
          "console stopped after bad input:\n" + "\n".join(lines))
    check(lm.poll() is None, "console died on bad input")
    lm.send_signal(signal.SIGTERM)
    rc = lm.wait(10)
    check(rc == 0, "line mode exit %s" % rc)
    for want in ["status online", "rules ok file=" + DEFAULT_RULE,
                 "data node1 temperature = 40.5",  # retained, at subscribe time
                 "alert node1/temperature FIRING value=40.5 threshold=35",
                 "data node1 temperature = 30.0", "data signal rssi = -50",
                 "data signal snr = 7"]:
        check(any(l.startswith(want) for l in lines), "line mode lacks %r:\n%s" % (
            want, "\n".join(lines)))
    check(any(re.match(r"alert node1/temperature ok value=30(\.0)? threshold=33", l)
              for l in lines), "line mode lacks the cleared alert:\n" + "\n".join(lines))
    check(any(l.startswith("stats packets=") for l in lines), "no stats line")
    check(all("\x1b" not in l for l in lines), "escape sequences in line mode")

    # bad usage
    r = subprocess.run([iiotgw(), "watch", "--bogus"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 1 and "Usage: iiotgw watch" in r.stderr, "bad option: %s" % r.stderr)
finally:
    cleanup()
print("ok")
