"""Shared pieces of the chat widget's browser tests (tests/e2e/test_widget_live.py).

Builds on tests/e2e/test_console_live.py (spawned daphne, real Celery worker, chromium) without
changing it, and adds what the widget needs:

- the live server's PUBLIC_BASE_URL (attachment links and the app's own origin) is its real URL;
- host pages on *other* origins (other ports) carrying the widget's one script tag, one whose origin
  is in the inbox's allowed origins and one whose origin is not;
- ORM access from a helper thread once Playwright runs in the test's thread;
- Playwright helpers for the shadow-DOM widget (Playwright's CSS engine pierces open shadow roots).
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from types import SimpleNamespace

from omnichannel.demo_site import serve_demo_site
from tests.e2e.test_console_live import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LIVE_TIMEOUT_MS,
    LiveConsoleTestCase,
    SpawnedDaphneProcess,
)

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "LIVE_TIMEOUT_MS", "MOBILE", "SCREENS_DIR", "W", "WidgetLiveTestCase", "orm",
           "png_bytes"]

SCREENS_DIR = os.environ.get("OMNICHANNEL_SCREENS_DIR", "/tmp/omnichannel-screens")
W = "[data-omnichannel]"  # the widget's host element; selectors below it reach into its shadow root
MOBILE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def orm(fn, *args, **kwargs):
    """Run `fn` in a helper thread: once Playwright's sync API runs in the test's thread, Django refuses
    ORM calls there (it sees a running event loop). The thread's connection is closed afterwards."""
    from django.db import connection

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)


def png_bytes(width: int = 24, height: int = 16, rgb: tuple[int, int, int] = (11, 92, 173)) -> bytes:
    """A real (decodable) RGB PNG of one colour with a white diagonal."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b""
    for y in range(height):
        row = bytearray()
        for x in range(width):
            row += bytes((255, 255, 255)) if abs(x - y * width // height) < 3 else bytes(rgb)
        rows += b"\x00" + bytes(row)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


class WidgetDaphneProcess(SpawnedDaphneProcess):
    """The spawned daphne of test_console_live, plus: PUBLIC_BASE_URL is the live server's own URL (set in
    the child once the port is known), so the signed attachment links the widget gets actually load."""

    def resolve_port(self):
        if self.server.listening_addresses:
            from django.conf import settings

            settings.PUBLIC_BASE_URL = f"http://{self.host}:{self.server.listening_addresses[0][1]}"
        super().resolve_port()


class WidgetLiveTestCase(LiveConsoleTestCase):
    """A web-chat inbox worked by team Support (alice, online), and two host pages carrying its snippet: one on an
    allowed origin, one on an origin that is not allowed. Tests named in `offline_tests` start with every agent
    offline."""

    ProtocolServerProcess = WidgetDaphneProcess
    offline_tests: frozenset[str] = frozenset()

    token = "e2e-widget-inbox-token"  # every test's inbox has this public token, so the host pages can stay up

    @classmethod
    def setUpClass(cls) -> None:
        from campaigns.views import snippet

        os.makedirs(SCREENS_DIR, exist_ok=True)
        super().setUpClass()
        try:
            tag = snippet(SimpleNamespace(public_token=cls.token), base=f"http://{cls.host}:{cls._port}")
            cls.site = serve_demo_site("127.0.0.1", 0, tag)  # its origin is allowed
            cls.evil_site = serve_demo_site("127.0.0.1", 0, tag)  # its origin is not
        except BaseException:
            super().tearDownClass()
            raise
        cls.site_url = f"http://127.0.0.1:{cls.site.server_address[1]}/"
        cls.evil_url = f"http://127.0.0.1:{cls.evil_site.server_address[1]}/"

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            for server in (cls.site, cls.evil_site):
                server.shutdown()
                server.server_close()
        finally:
            super().tearDownClass()

    # --- data (runs before Playwright starts) ---

    def _make_world(self) -> None:
        from agents.actions import do_create_api_token
        from agents.models import AgentProfile, Team
        from campaigns.models import WidgetConfig
        from conversations.models import ChannelKind, Inbox

        self.inbox = Inbox.objects.create(name="Website chat", kind=ChannelKind.WEBCHAT, public_token=self.token)
        support = Team.objects.create(name="Support")
        support.inboxes.set([self.inbox])
        self._make_agent("alice", teams=[support])
        # The REST API client: a supervisor who stays offline (an online supervisor would make the chat online).
        apibot = self._make_agent("apibot", role="supervisor")
        self.api_token = do_create_api_token(user=apibot, name="e2e")[1]
        if self._testMethodName in self.offline_tests:
            AgentProfile.objects.update(status=AgentProfile.Status.OFFLINE)
        else:
            AgentProfile.objects.filter(user=apibot).update(status=AgentProfile.Status.OFFLINE)
        WidgetConfig.objects.create(inbox=self.inbox, allowed_origins=self.site_url.rstrip("/") + "\n")

    def setUp(self) -> None:
        from playwright.sync_api import expect

        self.sockets: dict[str, list] = {}
        self.responses: dict[str, list[tuple[str, int]]] = {}
        expect.set_options(timeout=LIVE_TIMEOUT_MS)  # every expect() waits as long as a live event may take
        self.addCleanup(expect.set_options, timeout=5_000)  # Playwright's default
        super().setUp()

    # --- HTTP ---

    def widget_api(self, path: str, body: dict, origin: str):
        import requests

        return requests.post(f"{self.live_server_url}/widget/api/{self.token}/{path}/", data=json.dumps(body),
                             headers={"Content-Type": "text/plain", "Origin": origin.rstrip("/")}, timeout=10)

    def messages_of(self, conversation_id: int) -> list[dict]:
        response = self.api("GET", f"/api/v1/conversations/{conversation_id}/messages/?limit=200")
        assert response.status_code == 200, response.text
        return response.json()["results"]

    # --- browser ---

    def _watch(self, page, who: str) -> None:
        page.on("pageerror", lambda exc: self.page_errors.append(f"{who}: {exc}"))
        page.on("dialog", lambda dialog: (self.dialogs.append(f"{who}: {dialog.message}"), dialog.dismiss()))
        self._browser_stack.callback(self.screenshot, page, f"{self._testMethodName}-{who}")

    def agent_console(self, username: str = "alice", **context_options):
        """Like console_for(), with any viewport/device options."""
        context_options.setdefault("viewport", {"width": 1400, "height": 900})
        context = self.browser.new_context(**context_options)
        self._browser_stack.callback(context.close)
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        page = context.new_page()
        self._watch(page, username)
        page.goto(self.live_server_url + "/accounts/login/?next=/console/")
        page.fill("#id_username", username)
        page.fill("#id_password", "pw-" + username)
        page.click("form button[type=submit]")
        page.wait_for_url(self.live_server_url + "/console/")
        self.wait_live(page)
        return page

    def visitor(self, url: str | None = None, *, who: str = "visitor", init_script: str | None = None,
                **context_options):
        """A fresh browser (own localStorage) on the host page; returns the page once the launcher shows."""
        from playwright.sync_api import expect

        context_options.setdefault("viewport", {"width": 1280, "height": 800})
        context = self.browser.new_context(**context_options)
        self._browser_stack.callback(context.close)
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        self._watch(page, who)
        # Every widget socket and widget API answer this page sees, for the tests to check.
        self.sockets[who] = []
        self.responses[who] = []
        page.on("websocket", lambda ws: self.sockets[who].append(ws) if "/ws/widget/" in ws.url else None)
        page.on("response", lambda r: self.responses[who].append((r.url, r.status)) if "/widget/api/" in r.url
                else None)
        # A cross-origin answer without CORS headers never reaches the page: the request "fails" (status 0).
        page.on("requestfailed", lambda r: self.responses[who].append((r.url, 0)) if "/widget/api/" in r.url
                else None)
        page.goto(url or self.site_url)
        if url is None:
            expect(self.w(page, "button.launcher")).to_be_visible()
            expect(page.locator(W)).to_have_attribute("data-state", "live")
        return page

    @staticmethod
    def w(page, selector: str = ""):
        return page.locator(f"{W} {selector}".strip())

    def open_widget(self, page) -> None:
        from playwright.sync_api import expect

        self.w(page, "button.launcher").click()
        expect(self.w(page, "section.panel")).to_be_visible()

    def prechat(self, page, name: str, email: str, department: str) -> None:
        from playwright.sync_api import expect

        expect(self.w(page, "section.panel > div[data-view=prechat]")).to_have_count(1)
        self.w(page, "#omni-f-name").fill(name)
        self.w(page, "#omni-f-email").fill(email)
        self.w(page, "#omni-f-department").select_option(department)
        self.w(page, "form button[type=submit]").click()
        expect(self.w(page, "form.composer textarea")).to_be_visible()

    def visitor_says(self, page, text: str, *, wait: bool = True):
        """Type and send with Enter; with `wait`, until the server stored it (the pending bubble became real)."""
        from playwright.sync_api import expect

        self.w(page, "form.composer textarea").fill(text)
        self.w(page, "form.composer textarea").press("Enter")
        bubble = self.w(page, ".body .msg.visitor").filter(has_text=text)
        if wait:
            expect(bubble).to_have_count(1)
            expect(bubble).to_have_class("msg visitor")  # exactly: no longer "pending"
            expect(bubble).to_have_attribute("data-id", re.compile(r"^\d+$"))
        return bubble

    def row_for(self, page, name: str):
        from playwright.sync_api import expect

        row = page.locator("#rows li.row", has_text=name)
        expect(row).to_have_count(1)
        return row, int(row.get_attribute("data-id"))

    def agent_says(self, page, text: str):
        from playwright.sync_api import expect

        page.fill("#body", text)
        page.click("#send")
        msg = page.locator("#messages li.msg.msg-out", has_text=text)
        expect(msg).to_have_count(1)
        expect(page.locator("#body")).to_have_value("")
        return msg

    def shoot(self, page, name: str) -> str:
        path = os.path.join(SCREENS_DIR, name)
        page.screenshot(path=path)
        return path

    @staticmethod
    def stored_visitor_token(page, token: str) -> str | None:
        raw = page.evaluate("k => localStorage.getItem(k)", f"omnichannel:{token}:visitor")
        with suppress(TypeError, ValueError):
            return json.loads(raw)
        return None

    def try_socket(self, page, visitor_token: str, wait_ms: int = 3000) -> dict:
        """Open the widget socket from `page`'s origin with `visitor_token`: did it open, how did it close, which
        frames came. Settles when it closes, 300 ms after its first frame, or after `wait_ms`."""
        url = f"{self.live_server_ws_url}/ws/widget/{self.token}/?token={visitor_token}&cursor=0"
        return page.evaluate("""([url, waitMs]) => new Promise(resolve => {
            const r = {opened: false, closed: false, code: null, frames: []};
            let ws, done = false;
            const finish = () => { if (done) return; done = true; try { ws.close(); } catch (e) {} resolve(r); };
            try { ws = new WebSocket(url); } catch (e) { r.error = String(e); resolve(r); return; }
            ws.onopen = () => { r.opened = true; };
            ws.onmessage = e => { r.frames.push(e.data); setTimeout(finish, 300); };
            ws.onclose = e => { r.closed = true; r.code = e.code; finish(); };
            setTimeout(finish, waitMs);
        })""", [url, wait_ms])

    def wait_for_response(self, page, who: str, part: str, timeout: float = 10.0) -> int:
        """The status of the first widget API answer whose URL contains `part` seen by `who`'s page."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for url, status in list(self.responses[who]):
                if part in url:
                    return status
            page.wait_for_timeout(50)  # (not time.sleep: Playwright delivers events while it runs)
        raise AssertionError(f"{who}: no widget API answer for {part!r}: {self.responses[who]}")
