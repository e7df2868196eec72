"""A local stand-in for Twilio's REST API on loopback: records sends, answers like Twilio does."""

from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")


class FakeTwilio:
    def __init__(self):
        self.sends: list[dict] = []
        self.fail_with: list[tuple[int, dict]] = []  # queued error answers: (status, json)
        self.lists: list[str] = []  # GET …/Messages.json requests (paths)
        self.accept_delay = 0.0  # seconds Twilio takes to accept a send (it holds it only after that)
        self.send_arrived = threading.Event()  # set when a send request reaches the fake
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                outer.send_arrived.set()
                if outer.accept_delay:
                    time.sleep(outer.accept_delay)
                with outer.lock:
                    if outer.fail_with:
                        status, body = outer.fail_with.pop(0)
                    else:
                        status = 201
                        body = {"sid": f"SM{len(outer.sends) + 1:032d}", "status": "queued", "to": form.get("To"),
                                "from": form.get("From"), "body": form.get("Body"), "direction": "outbound-api",
                                "date_created": formatdate(usegmt=True)}
                        outer.sends.append({"path": self.path, "form": form, "auth": self.headers.get("Authorization"),
                                            "resource": body})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if urlsplit(self.path).path.endswith("/Messages.json"):  # the message list, newest first
                    to = parse_qs(urlsplit(self.path).query).get("To", [None])[0]
                    with outer.lock:
                        outer.lists.append(self.path)
                        found = [x["resource"] for x in reversed(outer.sends) if to in (None, x["resource"]["to"])]
                    data = json.dumps({"messages": found, "next_page_uri": None, "page": 0, "page_size": 50,
                                       "uri": self.path}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                # media
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
