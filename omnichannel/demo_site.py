"""A stand-in customer website on its own origin (another port), with the chat widget's one <script> tag."""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Outdoor — tents, packs and boots</title>
<style>
  body {{ font-family: Georgia, serif; margin: 0; background: #fbf7ef; color: #2b2118; }}
  header {{ background: #2f4f2f; color: #fff; padding: 24px 40px; }}
  main {{ max-width: 860px; margin: 30px auto; padding: 0 20px; line-height: 1.6; }}
  .cards {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 16px; }}
  .card {{ background: #fff; border: 1px solid #e2d9c6; border-radius: 8px; padding: 16px; }}
</style></head>
<body>
<header><h1>Acme Outdoor</h1><p>Gear for every trail since 1987.</p></header>
<main>
  <p>This page plays a customer's website on its own origin. The chat button in the corner is the
  Omnichannel widget, added with one script tag. Set yourself <strong>Online</strong> in the agent console,
  then chat here.</p>
  <div class="cards">
    <div class="card"><h2>Ridgeline 2 tent</h2><p>2.1 kg, three seasons. $349</p></div>
    <div class="card"><h2>Summit 40 pack</h2><p>Ventilated back, rain cover. $189</p></div>
    <div class="card"><h2>Trailrunner boots</h2><p>Waterproof, wide fit available. $159</p></div>
  </div>
</main>
{snippet}
</body></html>
"""


def serve_demo_site(host: str, port: int, snippet: str) -> ThreadingHTTPServer:
    body = PAGE.format(snippet=snippet).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in ("/", "/index.html") and not self.path.startswith("/?"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def escape(text: str) -> str:
    return html.escape(text)
