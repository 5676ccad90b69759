#!/usr/bin/python3
"""http_script.py — a scripted HTTP server for the InfluxDB sink's error-path tests.

This is a MOCK, on purpose: a real InfluxDB or victoria-metrics cannot be made to answer
401/413/429/503/500/400 or to hang on demand, and those are exactly the answers the sink's
retry/split/reject logic must be tested against. Everything that a real server CAN show
(writes, escaping, gzip decoding, read-back) is tested against real servers instead.

    /usr/bin/python3 http_script.py SCENARIO     prints the port on the first stdout line

Every POST is recorded; GET /_requests returns one line per recorded request:
    t=<seconds since start> status=<answered> lines=<n> gzip=<0|1> auth=<0|1> path=<path>
    first=<first line>   (all on one line)
Scenarios (what POST answers):
    ok        204 always
    401       401 with a JSON body that echoes the Authorization header, Basic credentials
              decoded (the sink must redact secrets before logging or passing them on)
    413       413 when the body has more than 2 lines or more than 200 bytes, else 204
    429       429 + "Retry-After: 1" on the first request, then 204
    429date   429 + Retry-After as an HTTP-date 30 s ahead on the first request, then 204
    503       503 without Retry-After on the first request, then 204
    500       500 on the first two requests, then 204
    400       400 with an InfluxDB-style JSON error body, always
    hang      first request: read it, then never answer; then 204
    reset     first request: read it, then reset the connection (RST, no answer); then 204

Only the stdlib of /usr/bin/python3.
"""
import base64
import email.utils
import gzip
import http.server
import os
import socket
import struct
import sys
import threading
import time

SCENARIO = sys.argv[1]
START = time.monotonic()
LOCK = threading.Lock()
REQUESTS = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the test output clean
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/_requests":
            self.reply(404)
            return
        with LOCK:
            text = "".join(r + "\n" for r in REQUESTS)
        self.reply(200, text.encode(), [("Content-Type", "text/plain")])

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        gz = self.headers.get("Content-Encoding", "") == "gzip"
        body = gzip.decompress(raw) if gz else raw
        lines = body.split(b"\n") if body else []
        with LOCK:
            idx = len(REQUESTS)
        status, payload, headers = self.decide(idx, lines, body)
        rec = "t=%.3f status=%d lines=%d gzip=%d auth=%d path=%s first=%s" % (
            time.monotonic() - START, status, len(lines), 1 if gz else 0,
            1 if self.headers.get("Authorization") else 0, self.path,
            lines[0].decode(errors="replace") if lines else "")
        with LOCK:
            REQUESTS.append(rec)
        if status == 0:  # hang: keep the connection open, never answer
            time.sleep(3600)
            return
        if status == -1:  # reset: SO_LINGER 0 makes close() send an RST
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        self.reply(status, payload, headers)

    def decide(self, idx, lines, body):
        s = SCENARIO
        if s == "ok":
            return 204, b"", ()
        if s == "401":
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):  # echo the decoded "user:password" (worst case)
                auth = "Basic " + base64.b64decode(auth[6:]).decode(errors="replace")
            msg = '{"code":"unauthorized","message":"unauthorized access: %s"}' % auth
            return 401, msg.encode(), [("Content-Type", "application/json")]
        if s == "413":
            if len(lines) > 2 or len(body) > 200:
                return 413, b'{"code":"request too large","message":"too big"}', ()
            return 204, b"", ()
        if s == "429":
            return (429, b"slow down", [("Retry-After", "1")]) if idx == 0 else (204, b"", ())
        if s == "429date":
            if idx == 0:
                when = email.utils.formatdate(time.time() + 30, usegmt=True)
                return 429, b"slow down", [("Retry-After", when)]
            return 204, b"", ()
        if s == "503":
            return (503, b"unavailable", ()) if idx == 0 else (204, b"", ())
        if s == "500":
            return (500, b"internal", ()) if idx < 2 else (204, b"", ())
        if s == "400":
            return 400, (b'{"error":"partial write: unable to parse \'bad line\': '
                         b'missing fields"}'), [("Content-Type", "application/json")]
        if s == "hang":
            return (0, b"", ()) if idx == 0 else (204, b"", ())
        if s == "reset":
            return (-1, b"", ()) if idx == 0 else (204, b"", ())
        return 500, b"unknown scenario", ()


def orphan_watchdog(parent):
    """Exit when the test that started us dies (an aborted test must not leave us behind)."""
    while True:
        time.sleep(0.2)
        if os.getppid() != parent:
            os._exit(0)


def main():
    threading.Thread(target=orphan_watchdog, args=(os.getppid(),), daemon=True).start()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.handle_error = lambda request, client_address: None  # the reset scenario's EPIPE
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
