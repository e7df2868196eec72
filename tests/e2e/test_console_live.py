"""Browser acceptance tests: the agent console live, end to end.

Everything real except the integration on the other side of the API channel:
daphne (HTTP + websockets) in a child process, PostgreSQL, the Redis channel layer,
a Celery worker consuming the Redis broker, Debian chromium driven by Playwright, and
a local HTTP server standing in for the integration's webhook.

Two agents are logged in (two browser contexts); a customer message posted through the
REST API appears in both consoles without a reload; an agent reply reaches the webhook
(signed) and the other agent's console; an internal note never reaches the webhook.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import tempfile
import threading
import time
from contextlib import ExitStack
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from channels.testing import ChannelsLiveServerTestCase
from daphne.testing import DaphneProcess
from django.db import connection

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LIVE_TIMEOUT_MS = 10_000  # an event must reach a console within this
WEBHOOK_TIMEOUT_S = 15.0  # an agent reply must reach the integration within this
NOTE_QUIET_S = 3.0  # how long we watch the webhook stay quiet after a note

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no chromium at {CHROMIUM}"),
]


# --- the integration's webhook --------------------------------------------------------


class FakeWebhook:
    """An HTTP server on 127.0.0.1 that records every POST (headers + raw body) and answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with recorder._lock:
                    recorder.deliveries.append({"path": self.path, "headers": dict(self.headers.items()),
                                                "body": body})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "11")
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-webhook", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/omnichannel"

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.deliveries)

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.snapshot()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return self.snapshot()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# --- the live server ------------------------------------------------------------------


def _child_application(get_application, database_name: str, allowed_hosts: list[str]):
    """Runs first thing in the daphne child, before Django is set up: same database and hosts as the parent."""
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = database_name
    settings.ALLOWED_HOSTS = allowed_hosts  # read by AllowedHostsOriginValidator when the app is built
    return get_application()


class SpawnedDaphneProcess(DaphneProcess):
    """daphne in a *spawned* child, which ChannelsLiveServerTestCase starts (with multiprocessing's
    default, fork, on Linux) with two problems:

    - A forked child inherits the parent's state after the other tests ran: asgiref's
      thread-sensitive executor whose thread does not exist in the child (every
      database_sync_to_async call of the console socket then hangs), channel-layer and
      database connections. A spawned child starts clean.
    - Its setup() names the database "test_" + NAME, but NAME is already the test database's
      name in the parent (pytest-django renamed it), giving "test_test_…". We pass the parent's
      current name (and ALLOWED_HOSTS, which the test case extends) instead.
    """

    _ctx = multiprocessing.get_context("spawn")

    def __init__(self, host, get_application, kwargs=None, setup=None, teardown=None, port=None):
        from django.conf import settings

        get_application = partial(_child_application, get_application, connection.settings_dict["NAME"],
                                  list(settings.ALLOWED_HOSTS))
        super().__init__(host, get_application, kwargs=kwargs, setup=None, teardown=teardown, port=port)
        # The shared objects must belong to the spawn context to be handed to a spawned child.
        self.port = self._ctx.Value("i", self.port.value)
        self.ready = self._ctx.Event()
        self.errors = self._ctx.Queue()

    @staticmethod
    def _Popen(process_obj):  # noqa: N802 - multiprocessing's name
        return SpawnedDaphneProcess._ctx.Process._Popen(process_obj)


class LiveConsoleTestCase(ChannelsLiveServerTestCase):
    """daphne in a child process + a Celery worker thread on the real Redis broker + chromium."""

    host = "127.0.0.1"
    serve_static = True
    ProtocolServerProcess = SpawnedDaphneProcess

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        try:
            cls._start_worker()
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def _start_worker(cls) -> None:
        # The worker thread shares this process's settings, so it uses the test database and the test queue
        # (CELERY_TASK_DEFAULT_QUEUE); it sees what the test commits (TransactionTestCase).
        from celery.contrib.testing.worker import start_worker

        from omnichannel.celery import app

        cls._worker_cm = start_worker(app, pool="solo", concurrency=1, perform_ping_check=False,
                                      loglevel="WARNING", shutdown_timeout=15.0)
        cls._worker_cm.__enter__()

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            cls._worker_cm.__exit__(None, None, None)
        finally:
            super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.webhook = FakeWebhook()
        self.addCleanup(self.webhook.stop)
        self._make_world()
        # Playwright last: its sync API marks an event loop as running in this thread, after which
        # Django refuses ORM calls here. From now on the test talks HTTP only (browser, REST API).
        self._browser_stack = ExitStack()
        self.addCleanup(self._browser_stack.close)
        from playwright.sync_api import sync_playwright

        pw = self._browser_stack.enter_context(sync_playwright())
        self.browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        self._browser_stack.callback(self.browser.close)
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []

    # --- data ---

    def _make_agent(self, username: str, *, role: str = "agent", teams=()):
        """Same as tests/conftest.py's make_agent fixture (password "pw-<username>")."""
        from django.contrib.auth import get_user_model

        from agents.actions import do_set_agent_role
        from agents.models import AgentProfile

        user = get_user_model().objects.create_user(username=username, password="pw-" + username,
                                                    first_name=username.title())
        agent = AgentProfile.objects.create(user=user, display_name=username.title(), status="online")
        agent.teams.set(list(teams))
        do_set_agent_role(agent=agent, role=role)
        return user

    def _make_world(self) -> None:
        from agents.actions import do_create_api_token
        from agents.models import Team
        from conversations.models import ChannelKind, Inbox

        self.shop_api = Inbox.objects.create(name="Shop API", kind=ChannelKind.API,
                                             settings={"webhook_url": self.webhook.url})
        self.sales_api = Inbox.objects.create(name="Sales API", kind=ChannelKind.API,
                                              settings={"webhook_url": self.webhook.url})
        self.shop_secret = self.shop_api.secret
        support = Team.objects.create(name="Support")
        support.inboxes.set([self.shop_api])
        sales = Team.objects.create(name="Sales")
        sales.inboxes.set([self.sales_api])
        self._make_agent("alice", teams=[support])
        self._make_agent("bob", teams=[support])
        self._make_agent("charlie", teams=[sales])
        # The integration authenticates as a supervisor (sees every inbox) with an API token.
        shopbot = self._make_agent("shopbot", role="supervisor")
        self.api_token = do_create_api_token(user=shopbot, name="e2e")[1]

    # --- helpers ---

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.live_server_url + path, timeout=10,
                                headers={"Authorization": f"Token {self.api_token}"}, **kwargs)

    def post_customer_message(self, inbox_id: int, body: str, *, source_id: str, name: str,
                              provider_message_id: str) -> dict:
        response = self.api("POST", f"/api/v1/inboxes/{inbox_id}/incoming/", json={
            "source_id": source_id, "body": body, "provider_message_id": provider_message_id,
            "contact": {"name": name}})
        assert response.status_code == 201, response.text
        return response.json()

    def console_for(self, username: str):
        """A fresh browser context (own cookies) logged in through the form, on /console/, socket live."""
        context = self.browser.new_context(viewport={"width": 1400, "height": 800})
        self._browser_stack.callback(context.close)
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.page_errors.append(f"{username}: {exc}"))
        page.on("dialog", lambda dialog: (self.dialogs.append(f"{username}: {dialog.message}"), dialog.dismiss()))
        # Runs before the context closes (LIFO): what each agent saw last, for debugging failures.
        self._browser_stack.callback(self.screenshot, page, f"{self._testMethodName}-{username}")
        page.goto(self.live_server_url + "/accounts/login/?next=/console/")
        page.fill("#id_username", username)
        page.fill("#id_password", "pw-" + username)
        page.click("form button[type=submit]")
        page.wait_for_url(self.live_server_url + "/console/")
        self.wait_live(page)
        return page

    @staticmethod
    def wait_live(page) -> None:
        from playwright.sync_api import expect

        expect(page.locator("#conn")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)

    @staticmethod
    def mark_page(page) -> None:
        """Tag the current document; the tag survives only as long as the page is not reloaded."""
        page.evaluate("window.__e2eSamePage = true")

    @staticmethod
    def same_page(page) -> bool:
        return page.evaluate("window.__e2eSamePage === true")

    @staticmethod
    def row(page, conversation_id: int):
        return page.locator(f'#rows li.row[data-id="{conversation_id}"]')

    def open_conversation(self, page, conversation_id: int) -> None:
        self.row(page, conversation_id).locator("a.row-link").click()
        page.wait_for_url(f"**/console/c/{conversation_id}/**")
        self.wait_live(page)

    @staticmethod
    def screenshot(page, name: str) -> None:
        try:
            page.screenshot(path=os.path.join(tempfile.gettempdir(), f"omnichannel-e2e-{name}.png"))
        except Exception:  # noqa: S110 - a missing debugging screenshot must not mask the test's outcome
            pass


class ConsoleLiveTests(LiveConsoleTestCase):
    def test_two_agents_api_message_reply_and_note(self) -> None:
        from playwright.sync_api import expect

        from omnichannel.outbound_webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

        alice = self.console_for("alice")
        bob = self.console_for("bob")
        for page in (alice, bob):
            self.mark_page(page)

        # 1. A customer writes through the API channel: both consoles list it, live.
        posted = self.post_customer_message(self.shop_api.id, "Where is my order #1042?",
                                            source_id="cust-1042", name="Dana Customer",
                                            provider_message_id="shop-msg-1")
        cid = posted["conversation_id"]
        for page in (alice, bob):
            expect(self.row(page, cid)).to_be_visible(timeout=LIVE_TIMEOUT_MS)
            expect(self.row(page, cid)).to_contain_text("Dana Customer")
            expect(self.row(page, cid)).to_contain_text("Where is my order #1042?")
            assert self.same_page(page), "the console reloaded instead of updating live"

        # 2. Both open the conversation.
        self.open_conversation(alice, cid)
        self.open_conversation(bob, cid)
        expect(bob.locator("#messages li.msg.msg-in")).to_contain_text("Where is my order #1042?")
        self.mark_page(bob)
        assert self.webhook.snapshot() == []

        # 2b. The assign control fetches its agents (status and load) when the agent reaches for it; assigning
        # from it works and both panels show the new assignee.
        assert bob.locator("#f-assignee option").count() <= 2  # "Unassigned" and the assignee until opened
        current = bob.locator("#f-assignee").input_value()
        bob.hover("#f-assignee")
        for name in ("Alice", "Bob"):
            expect(bob.locator("#f-assignee option", has_text=f"{name} (Online)")).to_have_count(1)
        expect(bob.locator("#f-assignee option", has_text="Charlie")).to_have_count(0)  # not on the inbox's team
        assert bob.locator("#f-assignee").input_value() == current  # opening it changed nothing
        values = {n: bob.locator("#f-assignee option", has_text=f"{n} (Online)").get_attribute("value")
                  for n in ("Alice", "Bob")}
        target = next(v for v in values.values() if v != current)
        # Agents transfer their own (or unassigned) conversations; only supervisors reassign someone else's.
        actor = alice if current == values["Alice"] else bob
        if actor is alice:
            alice.hover("#f-assignee")
            expect(alice.locator(f'#f-assignee option[value="{target}"]')).to_have_count(1)
        actor.select_option("#f-assignee", target)
        for page in (alice, bob):
            expect(page.locator(f'#f-assignee option[value="{target}"]')).to_have_attribute(
                "selected", "", timeout=LIVE_TIMEOUT_MS)
        self.mark_page(bob)

        # 3. Alice replies: the worker delivers it to the webhook, signed, exactly once.
        reply = "Hi Dana, your parcel left our warehouse this morning."
        alice.fill("#body", reply)
        alice.click("#send")
        deliveries = self.webhook.wait_for(1, WEBHOOK_TIMEOUT_S)
        assert len(deliveries) == 1, f"expected one webhook delivery, got {len(deliveries)}"
        delivery = deliveries[0]
        headers = delivery["headers"]
        assert verify(self.shop_secret, headers[TIMESTAMP_HEADER], delivery["body"], headers[SIGNATURE_HEADER])
        assert not verify("not-the-secret", headers[TIMESTAMP_HEADER], delivery["body"],
                          headers[SIGNATURE_HEADER])
        payload = json.loads(delivery["body"])
        assert payload["event"] == "message.created"
        assert payload["inbox_id"] == self.shop_api.id
        assert payload["conversation"] == {"id": cid, "source_id": "cust-1042",
                                           "contact_id": payload["conversation"]["contact_id"]}
        assert payload["message"]["body"] == reply
        assert payload["message"]["sender"] == {"type": "agent", "name": "Alice"}
        assert headers["X-Omnichannel-Delivery"] == payload["message"]["uuid"]
        reply_id = payload["message"]["id"]

        # ... and shows up in Bob's open conversation, live, with its delivery tick turning to sent.
        for page in (bob, alice):
            msg = page.locator(f"#messages li.msg#m{reply_id}")
            expect(msg).to_contain_text(reply, timeout=LIVE_TIMEOUT_MS)
            expect(msg).to_have_class(re.compile(r"\bmsg-out\b"))
            expect(msg).not_to_have_class(re.compile(r"\bmsg-note\b"))
            expect(msg.locator(".delivery")).to_have_class(re.compile(r"\bdelivery-sent\b"),
                                                           timeout=LIVE_TIMEOUT_MS)
            expect(msg.locator(".delivery")).to_have_text("✓")
        assert self.same_page(bob), "Bob's console reloaded instead of updating live"

        # 4. Alice switches to note mode with the keyboard shortcut and adds a note.
        alice.locator("#body").press("Escape")  # leave the text box: shortcuts only work outside inputs
        alice.keyboard.press("n")
        expect(alice.locator("#composer")).to_have_class(re.compile(r"\bmode-note\b"))
        expect(alice.locator('input[name=mode][value="note"]')).to_be_checked()
        expect(alice.locator("#send")).to_have_text("Add note")
        note = "Internal: customer is VIP, refund shipping if it is late again."
        alice.fill("#body", note)
        alice.click("#send")
        note_in_bob = bob.locator("#messages li.msg.msg-note", has_text=note)
        expect(note_in_bob).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        expect(note_in_bob.locator(".msg-who")).to_contain_text(re.compile(r"note by Alice", re.IGNORECASE))
        expect(note_in_bob.locator(".delivery")).to_have_count(0)
        expect(alice.locator("#messages li.msg.msg-note", has_text=note)).to_be_visible()
        assert self.same_page(bob), "Bob's console reloaded instead of updating live"

        # The note never reaches the integration.
        time.sleep(NOTE_QUIET_S)
        deliveries = self.webhook.snapshot()
        assert len(deliveries) == 1, [d["body"] for d in deliveries]
        assert not any(note.encode() in d["body"] for d in deliveries)

        # The REST API agrees: the reply is sent, the note is private and was never queued.
        messages = self.api("GET", f"/api/v1/conversations/{cid}/messages/").json()["results"]
        by_body = {m["body"]: m for m in messages}
        assert by_body[reply]["delivery_status"] == "sent" and not by_body[reply]["private"]
        assert by_body[note]["private"]
        assert by_body[note]["delivery_status"] not in ("queued", "sending", "sent", "delivered", "read")

        self.screenshot(bob, "agent-b-console")  # /tmp/omnichannel-e2e-agent-b-console.png
        assert self.page_errors == []
        assert self.dialogs == []

    def test_customer_html_is_text_and_other_teams_do_not_see_it(self) -> None:
        from playwright.sync_api import expect

        alice = self.console_for("alice")
        charlie = self.console_for("charlie")  # Sales: does not see the Shop API inbox
        for page in (alice, charlie):
            self.mark_page(page)

        evil = '<img src=x onerror=alert(1)><script>alert("body")</script>'
        evil_name = "<b onmouseover=alert(2)>Mallory</b>"
        shop = self.post_customer_message(self.shop_api.id, evil, source_id="mallory", name=evil_name,
                                          provider_message_id="shop-evil-1")
        sales = self.post_customer_message(self.sales_api.id, "Do you sell gift cards?",
                                           source_id="gina", name="Gina Buyer",
                                           provider_message_id="sales-1")
        shop_cid, sales_cid = shop["conversation_id"], sales["conversation_id"]

        # Each agent sees their team's conversation, live (this is also the control that events flow)...
        expect(self.row(alice, shop_cid)).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        expect(self.row(charlie, sales_cid)).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        # ... and never the other team's.
        time.sleep(1.0)
        expect(self.row(charlie, shop_cid)).to_have_count(0)
        expect(self.row(alice, sales_cid)).to_have_count(0)
        assert not any(e.startswith(f"inbox.{self.shop_api.id}:")
                       for e in charlie.evaluate("window.consoleEvents"))
        response = charlie.request.get(f"{self.live_server_url}/console/c/{shop_cid}/")
        assert response.status == 404

        # The customer's HTML is shown as text, in the live row and in the conversation.
        row = self.row(alice, shop_cid)
        expect(row.locator(".row-preview")).to_contain_text(evil)
        expect(row.locator(".row-name")).to_have_text(evil_name)
        expect(row.locator("img, script, b")).to_have_count(0)
        self.open_conversation(alice, shop_cid)
        incoming = alice.locator("#messages li.msg.msg-in")
        expect(incoming.locator(".msg-body")).to_have_text(evil)
        expect(alice.locator("#messages img, #messages script, #messages b")).to_have_count(0)
        expect(alice.locator(".conv-head h1")).to_contain_text(evil_name)
        assert self.same_page(charlie)
        assert self.dialogs == [], self.dialogs
        assert self.page_errors == []

    def test_composer_keeps_what_was_typed_during_a_send_and_c_opens_canned_after_text(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from playwright.sync_api import expect

        from conversations.models import CannedMessage

        with ThreadPoolExecutor(1) as pool:  # the ORM outside Playwright's event loop
            pool.submit(CannedMessage.objects.create, shortcut="thanks", title="Thanks",
                        body="Thank you for waiting!").result()
        posted = self.post_customer_message(self.shop_api.id, "Hello?", source_id="cust-77", name="Kim",
                                            provider_message_id="shop-msg-77")
        alice = self.console_for("alice")
        self.open_conversation(alice, posted["conversation_id"])
        # A slow send: the agent keeps typing (and picks a file) while the first reply is in flight.
        release = []

        def slow(route):
            release.append(route)

        alice.route("**/reply/", slow)
        alice.fill("#body", "First answer")
        alice.click("#send")
        expect(alice.locator("#send")).to_be_disabled()
        alice.fill("#body", "Second thought")
        alice.locator("#composer input[type=file]").set_input_files(
            {"name": "later.txt", "mimeType": "text/plain", "buffer": b"picked during the send"})
        while not release:
            alice.wait_for_timeout(50)
        release[0].continue_()
        alice.unroute("**/reply/")
        expect(alice.locator("#send")).to_be_enabled()
        expect(alice.locator("#messages")).to_contain_text("First answer")
        assert alice.locator("#body").input_value() == "Second thought"  # not wiped by the first send's success
        assert alice.locator("#composer input[type=file]").evaluate("el => el.files.length") == 1
        # "c" opens the canned search even after text: a space goes before the "#".
        alice.locator("#body").press("Escape")
        alice.keyboard.press("c")
        expect(alice.locator("#canned-list")).to_be_visible()
        expect(alice.locator("#canned-list")).to_contain_text("#thanks")
        alice.keyboard.press("Enter")
        assert alice.locator("#body").input_value() == "Second thought Thank you for waiting!"
