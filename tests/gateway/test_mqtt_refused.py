"""gw_mqtt_refused — a message the broker refuses for good is dead-lettered, not lost or re-sent.

A private mosquitto whose ACL lets anonymous clients write only below ok/. iiotgw (MQTT 5,
with a spool) publishes one QoS 1 message to denied/x and one to ok/x per packet. The broker
answers the denied ones with PUBACK reason 0x87 (not authorized): resending cannot help, so
each must leave the spool through the dead-letter (reason mqtt_rejected, the broker's reason in
the error, the payload as data) while the allowed ones arrive; the run exits 0 (nothing left
pending) and a second run on the same spool replays nothing.
"""
import os
import socket
import subprocess

from gwtest import (Subscriber, check, free_port, iiotgw, read_jsonl, stop_process, tmpdir,
                    unique, wait_for)

if subprocess.run(["sh", "-c", "command -v mosquitto"], capture_output=True).returncode:
    print("SKIP: mosquitto not installed")
    raise SystemExit(77)

d = tmpdir()
os.chmod(d, 0o755)  # mosquitto drops privileges (user mosquitto) when started as root
port = free_port()
acl = os.path.join(d, "acl")
with open(acl, "w") as f:
    f.write("topic readwrite ok/#\ntopic read denied/#\n")
os.chmod(acl, 0o644)
conf = os.path.join(d, "mosquitto.conf")
with open(conf, "w") as f:
    f.write("allow_anonymous true\npersistence false\nacl_file %s\nlistener %d 127.0.0.1\n"
            % (acl, port))
broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(d, "mosquitto.log"), "wb"))
try:
    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    check(wait_for(up, 10), "private mosquitto did not start")

    tag = unique("rf")
    rule = os.path.join(d, "rule.lua")
    with open(rule, "w") as f:
        f.write("function on_packet(p)\n"
                "  gw.publish('denied/%s', 'd' .. p.n, 1)\n"
                "  gw.publish('ok/%s', 'o' .. p.n, 1)\n"
                "end\n" % (tag, tag))
    inp = os.path.join(d, "in.jsonl")
    with open(inp, "w") as f:
        f.write("".join('{"n": %d}\n' % i for i in range(5)))
    dl = os.path.join(d, "dl.jsonl")
    spool = os.path.join(d, "spool")
    sub = Subscriber("127.0.0.1", port, "ok/" + tag)
    args = [iiotgw(), "-r", rule, "--mqtt", "mqtt://127.0.0.1:%d" % port, "-o",
            "mqtt.protocol=5", "--spool", spool, "--deadletter", dl, "-o", "drain_timeout=5"]
    r = subprocess.run(args + ["-s", "file:" + inp], capture_output=True, text=True, timeout=60)
    msgs = sub.stop()
    recs = read_jsonl(dl)
    rej = [x for x in recs if x["reason"] == "mqtt_rejected"]
    print("refused by the broker: exit=%d delivered=%d dead-lettered=%d %r"
          % (r.returncode, len(msgs), len(rej), [x["error"] for x in rej[:1]]), flush=True)
    check(r.returncode == 0, "exit %d (refused records left pending?)\n%s"
          % (r.returncode, r.stderr[-2000:]))
    check(sorted(m[1] for m in msgs) == ["o%d" % i for i in range(5)], "delivered %r" % msgs)
    check(sorted(x["data"] for x in rej) == ["d%d" % i for i in range(5)],
          "want the 5 denied messages dead-lettered: %r" % recs)
    check(all("denied/" + tag in x["error"] and "authorized" in x["error"] for x in rej),
          "dead-letter lacks the topic or the broker's reason: %r" % rej[:1])

    empty = os.path.join(d, "empty.jsonl")
    open(empty, "w").close()
    r = subprocess.run(args + ["-s", "file:" + empty], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "spool_resend" not in r.stderr,
          "second run: exit %d\n%s" % (r.returncode, r.stderr[-2000:]))
    with open(dl) as f:
        check(len([l for l in f if l.strip()]) == len(recs), "second run dead-lettered again")
    print("ok")
finally:
    stop_process(broker, 5)
