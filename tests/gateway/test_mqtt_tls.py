"""gw_mqtt_tls — mqtts:// with the system trust store, and TLS failures that say why.

A private mosquitto with a plain listener and a TLS listener on free loopback ports; a CA and
a server certificate for DNS:localhost made here with the openssl CLI. The real iiotgw:

1. mqtts://localhost with -o mqtt.cafile=<our CA>: connects, the rule's message arrives (read
   on the plain listener), exit 0.
2. mqtts://localhost without a CA option: the system trust store is used (before, libmosquitto
   refused the TLS setup and iiotgw did not start); our CA is not in it, so the connection
   fails and the log names the reason OpenSSL found ("unable to get local issuer
   certificate", or "self-signed certificate in certificate chain" when the server sends its
   CA too), not only "A TLS error occurred".
3. mqtts://127.0.0.1 with our CA: the certificate is for localhost, so the log names a host
   name mismatch.
4. A third listener with a certificate that expired (valid for 0 days): the log says
   "certificate has expired".
"""
import os
import subprocess
import time

from gwtest import (Subscriber, check, fail, free_port, iiotgw, stop_process, tmpdir, unique,
                    wait_for)

for tool in ("mosquitto", "openssl"):
    if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
        print("SKIP: %s not installed" % tool)
        raise SystemExit(77)

d = tmpdir()
os.chmod(d, 0o755)  # mosquitto drops privileges (user mosquitto) when started as root


def sh(*args):
    r = subprocess.run(list(args), cwd=d, capture_output=True, text=True)
    if r.returncode:
        fail("%s: %s" % (" ".join(args), r.stderr[-1000:]))


ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
sh("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
   "-subj", "/CN=iiotgw test CA")
sh("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
with open(os.path.join(d, "san.ext"), "w") as f:
    f.write("subjectAltName=DNS:localhost\n")
sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
   "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
   "-CAcreateserial", "-out", "expired.pem", "-days", "0", "-extfile", "san.ext")
os.chmod(os.path.join(d, "server.key"), 0o644)  # a throwaway key, readable by that user
made = time.time()

plain, tls, old = free_port(), free_port(), free_port()
conf = os.path.join(d, "mosquitto.conf")
with open(conf, "w") as f:
    f.write("allow_anonymous true\npersistence false\n"
            "listener %d 127.0.0.1\n"
            "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"
            "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"
            % (plain, tls, os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"),
               os.path.join(d, "server.key"), old, os.path.join(d, "ca.pem"),
               os.path.join(d, "expired.pem"), os.path.join(d, "server.key")))
broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(d, "mosquitto.log"), "wb"))
try:
    import socket

    def up():
        try:
            socket.create_connection(("127.0.0.1", tls), timeout=0.2).close()
            return True
        except OSError:
            return False
    check(wait_for(up, 10), "private mosquitto did not start")

    topic = unique("tls")
    rule = os.path.join(d, "rule.lua")
    with open(rule, "w") as f:
        f.write("function on_packet(p) gw.publish('%s/x', p.v, 1) end\n" % topic)
    inp = os.path.join(d, "in.jsonl")
    with open(inp, "w") as f:
        f.write('{"v": 42}\n')

    def gw(url, *opts):
        return subprocess.run([iiotgw(), "-r", rule, "-s", "file:" + inp, "--mqtt", url,
                               "--deadletter", "none", "-o", "drain_timeout=2"] + list(opts),
                              capture_output=True, text=True, timeout=60)

    # 1. a valid chain through an explicit CA file
    sub = Subscriber("127.0.0.1", plain, topic + "/#")
    r = gw("mqtts://localhost:%d" % tls, "-o", "mqtt.cafile=" + os.path.join(d, "ca.pem"))
    msgs = sub.stop()
    print("valid chain: exit=%d messages=%r" % (r.returncode, msgs), flush=True)
    check(r.returncode == 0, "valid chain: exit %d\n%s" % (r.returncode, r.stderr[-2000:]))
    check([m[:2] for m in msgs] == [(topic + "/x", "42")], "valid chain: got %r" % msgs)

    # 2. no CA option: the system store, which does not know our CA
    r = gw("mqtts://localhost:%d" % tls)
    fails = [l for l in r.stderr.splitlines() if "event=mqtt_connect_failed" in l]
    print("system store: exit=%d %s" % (r.returncode, fails[:1]), flush=True)
    check("event=start_failed" not in r.stderr, "no CA option: did not start\n%s" % r.stderr)
    # OpenSSL's words for an unknown CA depend on whether the server sends its CA too
    check(fails and "tls_reason=" in fails[0] and ("local issuer" in fails[0]
                                                   or "self-signed certificate in" in fails[0]),
          "unknown CA: the reason is not named\n%s" % r.stderr[-2000:])

    # 3. host name mismatch
    r = gw("mqtts://127.0.0.1:%d" % tls, "-o", "mqtt.cafile=" + os.path.join(d, "ca.pem"))
    fails = [l for l in r.stderr.splitlines() if "event=mqtt_connect_failed" in l]
    print("host mismatch: exit=%d %s" % (r.returncode, fails[:1]), flush=True)
    check(fails and "hostname mismatch" in fails[0],
          "host name mismatch: the reason is not named\n%s" % r.stderr[-2000:])

    # 4. an expired certificate (notAfter = the second it was made)
    time.sleep(max(0.0, made + 1.5 - time.time()))
    r = gw("mqtts://localhost:%d" % old, "-o", "mqtt.cafile=" + os.path.join(d, "ca.pem"))
    fails = [l for l in r.stderr.splitlines() if "event=mqtt_connect_failed" in l]
    print("expired: exit=%d %s" % (r.returncode, fails[:1]), flush=True)
    check(fails and "certificate has expired" in fails[0],
          "expired: the reason is not named\n%s" % r.stderr[-2000:])
    print("ok")
finally:
    stop_process(broker, 5)
