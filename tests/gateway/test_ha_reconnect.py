"""Home Assistant discovery across a broker restart: a private mosquitto without persistence
is stopped and started again (losing every retained message); after the gateway reconnects
the retained discovery messages are back, and Home Assistant's "online" still makes the
gateway republish — so the subscription to <discovery_prefix>/status was sent again on the new
connection. `iiotgw watch` reconnects too and shows new values."""
import atexit
import os
import re
import signal
import subprocess
import threading
import time

from gwtest import (DEFAULT_RULE, Subscriber, check, fail, free_port, iiotgw, mqtt_retained,
                    tmpdir, unique, wait_for)

d = tmpdir()
port = free_port()
host = "127.0.0.1"
conf = os.path.join(d, "mosquitto.conf")
with open(conf, "w") as f:
    f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % port)
prefix = unique("hr")
dprefix = unique("hrdisc")


def start_broker():
    b = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    atexit.register(lambda: b.poll() is None and b.kill())
    if not wait_for(lambda: subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t",
                                            "probe", "-n"], capture_output=True).returncode == 0,
                    10):
        fail("mosquitto did not start")
    return b


def configs():
    return mqtt_retained(host, port, dprefix + "/#", 1)


broker = start_broker()
gw = subprocess.Popen([iiotgw(), "-r", DEFAULT_RULE, "-s", "stdin", "--prefix", prefix,
                       "--mqtt", "mqtt://%s:%d" % (host, port), "--deadletter", "none",
                       "-o", "ha_discovery=true", "-o", "ha_discovery_prefix=" + dprefix,
                       "-o", "mqtt.backoff_base=0.1", "-o", "mqtt.backoff_max=0.3"],
                      stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
atexit.register(lambda: gw.poll() is None and gw.kill())
log = []
threading.Thread(target=lambda: [log.append(l) for l in gw.stderr], daemon=True).start()
watch = subprocess.Popen([iiotgw(), "watch", "--mqtt", "mqtt://%s:%d" % (host, port),
                          "--prefix", prefix], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
atexit.register(lambda: watch.poll() is None and watch.kill())
lines = []
threading.Thread(target=lambda: [lines.append(l.rstrip("\n")) for l in watch.stdout],
                 daemon=True).start()

first = wait_for(lambda: (lambda c: c if len(c) == 3 else None)(configs()), 10) or configs()
check(len(first) == 3, "before the restart: %s" % sorted(first))

# The broker goes away and comes back empty.
broker.send_signal(signal.SIGTERM)
broker.wait(10)
check(wait_for(lambda: any("mqtt_disconnected" in l for l in log), 10), "no disconnect seen")
broker = start_broker()
check(wait_for(lambda: sum("mqtt_connected" in l for l in log) >= 2, 15),
      "the gateway did not reconnect:\n" + "".join(log[-10:]))
again = wait_for(lambda: (lambda c: c if c == first else None)(configs()), 10) or configs()
check(again == first, "after the broker restart the discovery messages are not back: %s"
      % sorted(again))

# Home Assistant restarts: the gateway must still be subscribed to its status topic.
sub = Subscriber(host, port, dprefix + "/+/+/config")
time.sleep(0.3)
subprocess.run(["mosquitto_pub", "-h", host, "-p", str(port), "-t", dprefix + "/status",
                "-m", "online"], check=True)
time.sleep(2.0)
msgs = sub.stop()[len(first):]  # after the retained copies
check(sorted(m[0] for m in msgs) == sorted(first),
      "no republish on 'online' after the reconnect: %s" % [m[0] for m in msgs])

# The console reconnected as well.
gw.stdin.write('{"n1":{"t":23.25}}\n')
gw.stdin.flush()
check(wait_for(lambda: "data node1 temperature = 23.25" in lines, 10),
      "watch shows no value after the broker restart:\n" + "\n".join(lines[-10:]))
watch.send_signal(signal.SIGTERM)
check(watch.wait(10) == 0, "watch exit %s" % watch.returncode)
gw.send_signal(signal.SIGTERM)
check(gw.wait(15) == 0, "gateway exit %s:\n%s" % (gw.returncode, "".join(log[-10:])))
broker.send_signal(signal.SIGTERM)
broker.wait(10)
print("ok")
