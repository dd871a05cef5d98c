#!/usr/bin/env python3
"""Readers of the event feed during a delivery run (stdlib only).

    observers.py BASE TOKEN STREAMS READY_FILE OUT_JSON

Registers two webhook endpoints on the service: a healthy one (a local
HTTP/1.1 server answering 204 at once, in a process of its own, so that
reading the streams does not slow its answers) and a dead one (a socket
that accepts connections and never answers). Opens STREAMS Server-Sent Event streams
(`GET /v1/events`): one is parsed and timed, the others are read and
discarded as fast as they come (as a dashboard would), all in one thread.
Touches READY_FILE once everything is open. On SIGTERM writes to OUT_JSON:

  sse:     events seen on the timed stream, delay from the event's `at`
           (taken as the writer's transaction commits, before the log
           flush: an upper bound of the delay from its commit) to its arrival, p50 / p99 / max in ms; streams
           the service ended (too slow for the shared feed) and still open
  webhook: events the healthy endpoint got, delay from the event's
           timestamp to its arrival, p50 / p99 / max in ms
  dead:    connections the never-answering endpoint holds
"""

import datetime
import http.client
import http.server
import json
import multiprocessing
import selectors
import signal
import socket
import sys
import threading
import time
import urllib.parse


def now() -> float:
    return time.time()


def parse_at(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)


def summary(delays):
    return {
        "count": len(delays),
        "p50_ms": pct(delays, 0.50),
        "p99_ms": pct(delays, 0.99),
        "max_ms": round(max(delays) * 1000, 2) if delays else None,
    }


class Healthy(http.server.BaseHTTPRequestHandler):
    # Keep-alive: a webhook sender reuses its connections.
    protocol_version = "HTTP/1.1"
    delays: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        arrived = now()
        try:
            Healthy.delays.append(arrived - parse_at(json.loads(body)["timestamp"]))
        except (ValueError, KeyError):
            pass
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def serve_healthy(ports, stop, results) -> None:
    """The healthy endpoint's process: its port out, its delays at stop."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ports.put(server.server_address[1])
    stop.wait()
    results.put(list(Healthy.delays))


def register(base: str, token: str, url: str, description: str) -> None:
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = json.dumps({"url": url, "description": description})
    conn.request("POST", "/v1/webhooks", body,
                 {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 201:
        sys.exit(f"observers.py: registering {description} answered {response.status}: {response.read()!r}")
    conn.close()


def open_stream(base: str, token: str) -> socket.socket:
    parts = urllib.parse.urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(
        f"GET /v1/events HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit("observers.py: an event stream closed before its headers")
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        sys.exit(f"observers.py: GET /v1/events answered {status!r}")
    sock.setblocking(False)
    return sock


def main() -> None:
    base, token, streams, ready_file, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

    ports, healthy_stop, healthy_results = multiprocessing.Queue(), multiprocessing.Event(), multiprocessing.Queue()
    healthy = multiprocessing.Process(target=serve_healthy, args=(ports, healthy_stop, healthy_results), daemon=True)
    healthy.start()
    healthy_port = ports.get(timeout=30)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    held = []
    dead.setblocking(False)

    register(base, token, f"http://127.0.0.1:{healthy_port}/hook", "bench: healthy")
    register(base, token, f"http://127.0.0.1:{dead.getsockname()[1]}/hook", "bench: never answers")

    selector = selectors.DefaultSelector()
    timed = open_stream(base, token)
    selector.register(timed, selectors.EVENT_READ, "timed")
    for _ in range(streams - 1):
        selector.register(open_stream(base, token), selectors.EVENT_READ, "discard")
    selector.register(dead, selectors.EVENT_READ, "dead")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    open(ready_file, "w").close()

    sse_delays, buffer, ended = [], b"", 0
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.2):
            if key.data == "dead":
                try:
                    conn, _ = dead.accept()
                    held.append(conn)
                except BlockingIOError:
                    pass
                continue
            try:
                chunk = key.fileobj.recv(262144)
            except BlockingIOError:
                continue
            if not chunk:
                selector.unregister(key.fileobj)
                ended += 1
                continue
            if key.data != "timed":
                continue
            arrived = now()
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"data:"):
                        try:
                            sse_delays.append(arrived - parse_at(json.loads(line[5:])["at"]))
                        except (ValueError, KeyError):
                            pass

    healthy_stop.set()
    webhook_delays = healthy_results.get(timeout=30)
    result = {
        "streams": streams,
        "sse": {**summary(sse_delays), "streams_ended": ended, "streams_open": streams - ended},
        "webhook": summary(webhook_delays),
        "dead": {"connections_held": len(held)},
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
