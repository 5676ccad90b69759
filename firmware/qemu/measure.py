#!/usr/bin/python3
"""measure.py — instruction count of one sampling + framing cycle of node 1, executed as
Cortex-M4 code under QEMU (netduinoplus2).

usage: measure.py [IMAGES_DIR]      (default build-arm; node{1,2}-qemu.elf must be there)

Method: both emulated images run with the radio bridge (clean link) under
`qemu-system-arm -singlestep -d exec,nochain`, so QEMU logs every executed instruction's
address, one translation block per instruction. Windows cut from the traces:
  node 1, sampling + framing: from the first instruction of node1_sensors_sample() (where
      start_frame() in node1_poll begins a cycle) to the return from the radio_write() that
      hands the AT+SEND line to UART4 — the first cycle (which also reads the BME680's
      calibration) and the second (steady state);
  node 2, one packet: the first node2_on_line() call that sends a radio reply, i.e. a +RCV
      line with a new DATA frame: AT parse, hex decode, CRC, ACK formatting and write, the
      telemetry line built and written to the console UART; entry to return.
Each instruction is attributed with the ELF's symbol table and a shadow call stack (bl/blx push
their return address, taken from the disassembly):
  emulated devices  everything inside the board's i2c_write/i2c_read calls: the in-image
                    SHT3x/BME680 and the double-precision sensor model — emulation only,
                    on the board these are bus transfers (the I2C driver's polling loops,
                    not counted here; they depend on the bus clock, not the CPU)
  waiting           the delay_ms() wfi loop (16 ms SHT3x conversion, 150 ms BME680 heater)
  interrupts        SysTick_Handler, UART4_IRQHandler
  firmware work     the rest: drivers, conversions, frame encoding, CRC, AT+SEND formatting,
                    the UART write loops — the cost figure, printed per function.
QEMU counts instructions, not cycles (it models neither pipeline nor flash wait states, and
its Cortex-M machines have no DWT cycle counter): cycles on the chip are at least this many.
"""
import bisect
import collections
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = sys.argv[1] if len(sys.argv) > 1 else "build-arm"
ELF = os.path.join(IMAGES, "node1-qemu.elf")
QEMU = os.environ.get("QEMU", "qemu-system-arm")


def symbols(elf):
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", elf],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTW":
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
        elif len(f) == 3 and f[1] in "tTW":   # assembly routines carry no size
            syms.append((int(f[0], 16), 0, f[2]))
    syms.sort()
    return syms


def calls(elf):
    """address -> return address for every bl/blx instruction."""
    out = subprocess.run(["arm-none-eabi-objdump", "-d", elf], capture_output=True, text=True,
                         check=True).stdout
    ret = {}
    for m in re.finditer(r"^\s*([0-9a-f]+):\s+([0-9a-f]{4})(?: ([0-9a-f]{4}))?\s+(blx?)\b",
                         out, re.M):
        size = 4 if m.group(3) else 2
        ret[int(m.group(1), 16)] = int(m.group(1), 16) + size
    return ret


def run_traced(d, seconds):
    """Both nodes under QEMU with exec traces; returns the trace paths."""
    bridge = subprocess.Popen([sys.executable, os.path.join(HERE, "radio_bridge.py"), "--sock1",
                               os.path.join(d, "r1"), "--sock2", os.path.join(d, "r2"),
                               "--stats", os.path.join(d, "radio.json")])
    procs = [bridge]
    traces = []
    try:
        for _ in range(100):
            if os.path.exists(os.path.join(d, "r1")) and os.path.exists(os.path.join(d, "r2")):
                break
            time.sleep(0.05)
        for node in (2, 1):
            trace = os.path.join(d, "trace%d.log" % node)
            traces.append(trace)
            procs.append(subprocess.Popen(
                [QEMU, "-M", "netduinoplus2", "-display", "none", "-monitor", "none",
                 "-nodefaults", "-kernel", os.path.join(IMAGES, "node%d-qemu.elf" % node),
                 "-chardev", "socket,id=radio,path=" + os.path.join(d, "r%d" % node),
                 "-serial", "null", "-serial", "null", "-serial", "null",
                 "-serial", "chardev:radio", "-singlestep", "-d", "exec,nochain", "-D", trace],
                stderr=subprocess.DEVNULL))
        time.sleep(seconds)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
    return traces[1], traces[0]


def read_trace(path):
    pcs = []
    pat = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
    with open(path) as f:
        for line in f:
            m = pat.match(line)
            if m:
                pcs.append(int(m.group(1), 16))
    return pcs


class Image:
    def __init__(self, elf):
        self.syms = symbols(elf)
        self.byname = {n: a for a, _, n in self.syms}
        self.starts = [a for a, _, _ in self.syms]
        self.callret = calls(elf)

    def func(self, pc):
        i = bisect.bisect_right(self.starts, pc) - 1
        # size-0 symbols (libgcc's assembly routines) own everything up to the next symbol
        if i >= 0 and (pc < self.syms[i][0] + self.syms[i][1] or self.syms[i][1] == 0):
            return self.syms[i][2]
        return "0x%08x" % pc


def window(img, pcs, i0, end):
    """Attribute pcs[i0:] until the window ends; end = "radio": return from the first
    radio_write; "return": return from the function entered at pcs[i0] (called by bl/blx).
    Returns (categories, work by function, radio written) or None if the trace ends first."""
    i2c = {img.byname["qb_i2c_write"], img.byname["qb_i2c_read"]}
    radio = img.byname["qb_radio_write"]
    isr = {"SysTick_Handler", "UART4_IRQHandler"}
    stack, emu_until, end_at = [], None, None
    if end == "return":
        end_at = img.callret.get(pcs[i0 - 1])
        if end_at is None:
            return None
        stack.append(end_at)
    cat = collections.Counter()
    work = collections.Counter()
    wrote_radio = False
    prev = None
    for pc in pcs[i0:]:
        if prev is not None and prev in img.callret:
            stack.append(img.callret[prev])
        done = False
        while stack and pc == stack[-1]:
            stack.pop()
            if emu_until is not None and pc == emu_until:
                emu_until = None
            if end_at is not None and pc == end_at:
                done = True
                break
        if done:
            return cat, work, wrote_radio
        if pc in i2c and emu_until is None and stack:
            emu_until = stack[-1]
        if pc == radio:
            wrote_radio = True
            if end == "radio" and end_at is None and stack:
                end_at = stack[-1]
        name = img.func(pc)
        if name in isr:
            cat["interrupts"] += 1
        elif emu_until is not None:
            cat["emulated devices"] += 1
        elif name == "qb_delay":
            cat["waiting"] += 1
        else:
            cat["firmware work"] += 1
            work[name] += 1
        prev = pc
    return None


def show(title, result):
    cat, work, _ = result
    print(title)
    for k in ("firmware work", "waiting", "interrupts", "emulated devices"):
        print("  %-17s %8d" % (k, cat[k]))
    print("  %-17s %8d" % ("total", sum(cat.values())))
    print("  firmware work by function:")
    for name, n in work.most_common():
        print("    %-28s %7d" % (name, n))


def main():
    d = tempfile.mkdtemp(prefix="fw-measure.")
    try:
        t1, t2 = run_traced(d, 6.0)   # setup, then a sample every second
        pcs1, pcs2 = read_trace(t1), read_trace(t2)
    finally:
        for p in os.listdir(d):
            os.unlink(os.path.join(d, p))
        os.rmdir(d)

    img1 = Image(os.path.join(IMAGES, "node1-qemu.elf"))
    entry = img1.byname["node1_sensors_sample"]
    starts = [i for i, pc in enumerate(pcs1) if pc == entry]
    if len(starts) < 2:
        sys.exit("measure.py: node1_sensors_sample ran %d times in the trace" % len(starts))
    for k, i0 in enumerate(starts[:2]):
        r = window(img1, pcs1, i0, "radio")
        if r is None:
            sys.exit("measure.py: node 1's trace ends inside a cycle")
        show("node 1, sampling + framing cycle %d%s (node1_sensors_sample .. AT+SEND written), "
             "instructions:" % (k + 1, ", with the BME680 calibration read" if k == 0
                                else ", steady state"), r)

    img2 = Image(os.path.join(IMAGES, "node2-qemu.elf"))
    entry = img2.byname["node2_on_line"]
    for i0 in (i for i, pc in enumerate(pcs2) if pc == entry and i > 0):
        r = window(img2, pcs2, i0, "return")
        if r is not None and r[2]:
            show("node 2, one new DATA frame (node2_on_line for its +RCV line: ACK sent, "
                 "telemetry line written), instructions:", r)
            break
    else:
        sys.exit("measure.py: no +RCV handled by node 2 in the trace")


if __name__ == "__main__":
    main()
