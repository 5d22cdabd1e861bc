#!/usr/bin/env python3
"""Serves one Ably-style SSE stream of N messages on 127.0.0.1:PORT/sse.

The frames are the ones mock-ably sends (ABLY-PROTOCOL.md §1.4): `id:`,
`event: message`, `data:` with a JSON Message whose data is JSON text with
`encoding: json`. After the last message the connection stays open, so each
client stops on its own count. Usage: server.py PORT [N].
"""
import http.server
import json
import sys
import time

PORT = int(sys.argv[1])
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 20000

frames = []
for n in range(COUNT):
    message = {
        "id": f"conn:{n}:0",
        "channel": "bench",
        "name": "update",
        "data": json.dumps({"n": n, "text": "hello world", "score": n * 7 % 1000}),
        "encoding": "json",
        "timestamp": 1700000000000 + n,
    }
    frames.append(f"id: bench@1700000000000-{n}\nevent: message\ndata: {json.dumps(message)}\n\n")
BODY = "".join(frames).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            for start in range(0, len(BODY), 16384):
                self.wfile.write(BODY[start:start + 16384])
            self.wfile.flush()
            while True:
                time.sleep(1)
                self.wfile.write(b":keepalive\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
