"""SIGTERM with a live exec source: the gateway stops reading, delivers what it has, publishes
"offline", kills the child's whole process group (grandchildren too) and exits 0 promptly.
SIGUSR1 prints stats. A dying gateway (SIGKILL) leaves its last will "offline"."""
import os
import signal
import subprocess
import threading
import time

from gwtest import Subscriber, check, fail, iiotgw, mqtt_retained, need_env, tmpdir, unique

host, port = need_env("IIOTGW_TEST_MQTT_HOST", "IIOTGW_TEST_MQTT_PORT")
prefix = unique("sg")
d = tmpdir()
rule = os.path.join(d, "rule.lua")
with open(rule, "w") as f:
    f.write('function on_packet(p) gw.publish(gw.prefix .. "/n", p.ts) end\n')
cmd = "sleep 1000 & i=0; while :; do i=$((i+1)); echo \"{\\\"ts\\\":$i}\"; sleep 0.02; done"


def children_map():
    kids = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(pid))
    return kids


def descendants(root):
    kids, out, todo = children_map(), [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def alive(pids):
    left = []
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                left.append((pid, f.read().rsplit(")", 1)[1].split()[0]))
        except OSError:
            pass
    return left


def start():
    p = subprocess.Popen([iiotgw(), "-r", rule, "-s", "sim=exec:" + cmd, "--prefix", prefix,
                          "--mqtt", "mqtt://%s:%s" % (host, port), "--deadletter", "none",
                          "-o", "mqtt.keepalive=5"],
                         stderr=subprocess.PIPE, text=True)
    log = []
    threading.Thread(target=lambda: [log.append(l) for l in p.stderr], daemon=True).start()
    return p, log


sub = Subscriber(host, port, prefix + "/#")
p, log = start()
time.sleep(1.5)
tree = descendants(p.pid)
check(len(tree) >= 2, "the exec source and its grandchild should be running: %r" % tree)
p.send_signal(signal.SIGUSR1)
time.sleep(0.3)
check(any("event=stats" in l for l in log), "SIGUSR1 must log stats:\n" + "".join(log))
t0 = time.time()
p.send_signal(signal.SIGTERM)
try:
    rc = p.wait(15)
except subprocess.TimeoutExpired:
    p.kill()
    fail("gateway did not exit within 15 s of SIGTERM")
took = time.time() - t0
check(rc == 0, "exit code %d\n%s" % (rc, "".join(log)))
time.sleep(0.3)
check(not alive(tree), "processes of the exec source survived (pid, state): %r" % alive(tree))
msgs = sub.stop()
n = [m for m in msgs if m[0] == prefix + "/n"]
check(len(n) > 10, "packets should have flowed before SIGTERM: %d" % len(n))
check(mqtt_retained(host, port, prefix + "/gateway/status").get(prefix + "/gateway/status")
      == "offline", "clean shutdown must leave status offline")

# Last will: SIGKILL the gateway; the broker publishes "offline" after keepalive * 1.5.
p, log = start()
wait_online = time.time() + 5
while time.time() < wait_online:
    if mqtt_retained(host, port, prefix + "/gateway/status", 1).get(prefix + "/gateway/status") == "online":
        break
else:
    fail("status never went online")
tree = descendants(p.pid)
child = children_map().get(p.pid, [])
p.kill()
p.wait()
# The exec source's direct child gets SIGTERM from the kernel (PR_SET_PDEATHSIG) when the
# gateway dies, so probe-rs would not keep holding the debug probe.
time.sleep(0.5)
check(not [x for x in alive(child) if x[1] != "Z"],
      "exec source child survived the gateway's SIGKILL: %r" % alive(child))
for pid, _ in alive(tree):  # grandchildren are beyond the gateway's reach; the test cleans up
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
deadline = time.time() + 12
while time.time() < deadline:
    if mqtt_retained(host, port, prefix + "/gateway/status", 1).get(prefix + "/gateway/status") == "offline":
        break
else:
    fail("last will 'offline' not published after SIGKILL")
print("ok: SIGTERM exit in %.2fs" % took)
