#!/usr/bin/python3
"""radio_bridge.py — two emulated RYLR998 modules and the air between them, for the QEMU node
images (firmware/qemu/run.sh).

Each node's UART4 is a QEMU socket chardev connecting to a unix socket this bridge listens on.
On each side the bridge speaks the RYLR998 AT protocol the way the host simulator's module does
(firmware/board/host/radio_sim.c):
  on connect            +READY
  AT+ADDRESS=<n>        +OK (the module's address)
  AT+SEND=<dst>,<len>,<data>  +OK, then the packet is on the air; +ERR=4 if malformed
  AT, AT+<anything>     +OK (NETWORKID, BAND, PARAMETER accepted)
  other                 +ERR=4
and delivers received packets as +RCV=<src>,<len>,<data>,<rssi>,<snr> to the other module when
<dst> is its address or 0 (broadcast).

Channel model, same parameters as radio_sim.c: the transmitting side loses a packet with
probability --loss and otherwise flips one random bit of the binary frame with probability
--corrupt; the receiving side computes RSSI = 22 - 31.7 - 27 log10(distance) + N(0, 1.5) dBm,
SNR = (RSSI + 111)/5 + N(0, 1) dB clamped to [-20, 13], and drops packets with SNR < -7.5 dB
(below the SF7 demodulation floor). Random draws use radio_sim.c's xorshift32 and seeding, one
generator per module (seed, seed + 1).

On SIGTERM/SIGINT, or when both nodes disconnect, it writes a JSON summary — per module sent,
lost, corrupted, received, filtered — to --stats (or stderr) and exits 0.

usage: radio_bridge.py --sock1 PATH --sock2 PATH [--loss P] [--corrupt P] [--distance M]
                       [--seed N] [--stats FILE] [--trace FILE]
"""
import argparse
import json
import math
import os
import selectors
import signal
import socket
import sys


class Rng:
    """radio_sim.c's generator: xorshift32, uniform = (x >> 8) / 2^24, Box-Muller gauss."""

    def __init__(self, seed):
        self.s = (seed * 2246822519 + 0x51ED270B) & 0xFFFFFFFF

    def uniform(self):
        x = self.s or 0x9E3779B9
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return (x >> 8) / 16777216.0

    def gauss(self):
        u1, u2 = self.uniform(), self.uniform()
        u1 = max(u1, 1e-12)
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class Module:
    def __init__(self, name, path, seed):
        self.name, self.path = name, path
        self.rng = Rng(seed)
        self.address = 0
        self.conn = None
        self.rxbuf = b""
        self.peer = None
        self.stats = {"sent": 0, "lost": 0, "corrupted": 0, "received": 0, "filtered": 0}
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(1)


def hex_corrupt(rng, data):
    """One random bit of the hex-encoded binary frame flipped (radio_sim.c corrupt_payload)."""
    try:
        raw = bytearray(bytes.fromhex(data.decode()))
    except ValueError:
        raw = None
    if not raw:
        i = int(rng.uniform() * len(data))
        b = bytearray(data)
        b[i] ^= 0x01
        return bytes(b)
    bit = int(rng.uniform() * len(raw) * 8)
    raw[bit // 8] ^= 1 << (bit % 8)
    return raw.hex().upper().encode()


class Bridge:
    def __init__(self, args):
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.mods = [Module("node1", args.sock1, args.seed), Module("node2", args.sock2,
                                                                    args.seed + 1)]
        self.mods[0].peer, self.mods[1].peer = self.mods[1], self.mods[0]
        for m in self.mods:
            self.sel.register(m.lsock, selectors.EVENT_READ, ("listen", m))
        self.trace = open(args.trace, "a", buffering=1) if args.trace else None
        self.ever_connected = 0
        self.stop = False

    def log(self, msg):
        if self.trace:
            self.trace.write(msg + "\n")

    def to_node(self, m, text):
        if m.conn is None:
            return
        try:
            m.conn.sendall(text.encode() if isinstance(text, str) else text)
        except OSError:
            self.drop(m)

    def drop(self, m):
        if m.conn is not None:
            self.sel.unregister(m.conn)
            m.conn.close()
            m.conn = None
            self.log("%s disconnected" % m.name)

    def transmit(self, m, dst, data):
        m.stats["sent"] += 1
        if m.rng.uniform() < self.args.loss:
            m.stats["lost"] += 1
            self.log("%s -> %d lost" % (m.name, dst))
            return
        if m.rng.uniform() < self.args.corrupt:
            m.stats["corrupted"] += 1
            data = hex_corrupt(m.rng, data)
            self.log("%s -> %d corrupted" % (m.name, dst))
        self.receive(m.peer, m.address, dst, data)

    def receive(self, r, src, dst, data):
        if dst != 0 and dst != r.address:
            r.stats["filtered"] += 1
            return
        d = max(self.args.distance, 0.1)
        rssi = 22.0 - 31.7 - 27.0 * math.log10(d) + 1.5 * r.rng.gauss()
        snr = min(13.0, max(-20.0, (rssi + 111.0) / 5.0 + r.rng.gauss()))
        if snr < -7.5:
            r.stats["lost"] += 1
            return
        r.stats["received"] += 1
        # lround: half away from zero, as in radio_sim.c
        rnd = lambda v: int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)
        self.to_node(r, b"+RCV=%d,%d,%s,%d,%d\r\n" % (src, len(data), data, rnd(rssi), rnd(snr)))

    def command(self, m, cmd):
        self.log("%s: %s" % (m.name, cmd.decode(errors="replace")))
        if cmd.startswith(b"AT+ADDRESS="):
            try:
                m.address = int(cmd[11:])
            except ValueError:
                return self.to_node(m, "+ERR=4\r\n")
            return self.to_node(m, "+OK\r\n")
        if cmd.startswith(b"AT+SEND="):
            parts = cmd[8:].split(b",", 2)
            try:
                dst, n = int(parts[0]), int(parts[1])
                data = parts[2]
            except (ValueError, IndexError):
                return self.to_node(m, "+ERR=4\r\n")
            if dst < 0 or n <= 0 or n > 240 or len(data) != n:
                return self.to_node(m, "+ERR=4\r\n")
            self.to_node(m, "+OK\r\n")
            return self.transmit(m, dst, data)
        if cmd.startswith(b"AT+") or cmd == b"AT":
            return self.to_node(m, "+OK\r\n")
        return self.to_node(m, "+ERR=4\r\n")

    def on_bytes(self, m, chunk):
        m.rxbuf += chunk
        while b"\n" in m.rxbuf:
            line, m.rxbuf = m.rxbuf.split(b"\n", 1)
            line = line.replace(b"\r", b"")
            if line:
                self.command(m, line)
        if len(m.rxbuf) > 600:   # the module's command buffer: an over-long line is dropped
            m.rxbuf = b""

    def run(self):
        while not self.stop:
            for key, _ in self.sel.select(timeout=0.5):
                kind, m = key.data
                if kind == "listen":
                    conn, _ = m.lsock.accept()
                    self.drop(m)
                    m.conn, m.rxbuf = conn, b""
                    self.sel.register(conn, selectors.EVENT_READ, ("data", m))
                    self.ever_connected += 1
                    self.log("%s connected" % m.name)
                    self.to_node(m, "+READY\r\n")
                else:
                    try:
                        chunk = m.conn.recv(4096)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        self.drop(m)
                    else:
                        self.on_bytes(m, chunk)
            if self.ever_connected and all(m.conn is None for m in self.mods):
                break

    def summary(self):
        out = {m.name: dict(m.stats, address=m.address) for m in self.mods}
        text = json.dumps(out, sort_keys=True) + "\n"
        if self.args.stats:
            with open(self.args.stats + ".tmp", "w") as f:
                f.write(text)
            os.replace(self.args.stats + ".tmp", self.args.stats)
        else:
            sys.stderr.write(text)
        for m in self.mods:
            m.lsock.close()
            try:
                os.unlink(m.path)
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description="RYLR998 radio bridge between two QEMU nodes")
    ap.add_argument("--sock1", required=True, help="unix socket for node 1's UART4")
    ap.add_argument("--sock2", required=True, help="unix socket for node 2's UART4")
    ap.add_argument("--loss", type=float, default=0.0, help="packet loss probability")
    ap.add_argument("--corrupt", type=float, default=0.0, help="bit corruption probability")
    ap.add_argument("--distance", type=float, default=30.0, help="link distance, metres (30)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stats", help="write the JSON summary here on exit (default stderr)")
    ap.add_argument("--trace", help="append every AT command and channel event here")
    args = ap.parse_args()
    for p in ("loss", "corrupt"):
        if not 0.0 <= getattr(args, p) <= 1.0:
            ap.error("--%s must be in [0, 1]" % p)
    b = Bridge(args)

    def on_signal(signum, frame):
        b.stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        b.run()
    finally:
        b.summary()


if __name__ == "__main__":
    main()
