"""Browser acceptance test: SMS through Twilio, end to end in the agent console.

"An inbound SMS appears in the console live; the agent replies; the fake Twilio receives exactly
one send; a delivered callback shows the tick."

Everything real except Twilio: daphne (HTTP + websockets) in a spawned child process, PostgreSQL,
the Redis channel layer, a Celery worker thread on the Redis broker, Debian chromium through
Playwright. Twilio's side is played by this test: it posts webhooks signed exactly as Twilio signs
them (RequestValidator.compute_signature over the public URL + the posted parameters), and a fake
Twilio REST API on loopback (tests/integrations/twilio_sms/fake.py) records what the SDK sends.

Both processes agree on PUBLIC_BASE_URL = the live server's URL: the daphne child sets it once its
port is known (it verifies signatures against it) and the test process overrides it (the worker
thread builds the StatusCallback URL from it). TWILIO_API_BASE_URL points the worker's SDK at the
fake.
"""

from __future__ import annotations

import base64
import os
import re
import time

import pytest
import requests
from django.test import override_settings
from twilio.request_validator import RequestValidator

from tests.e2e.test_console_live import (
    CHROMIUM,
    LIVE_TIMEOUT_MS,
    WEBHOOK_TIMEOUT_S,
    LiveConsoleTestCase,
    SpawnedDaphneProcess,
)
from tests.integrations.twilio_sms.fake import FakeTwilio

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no chromium at {CHROMIUM}"),
]

SCREENS_DIR = os.environ.get("OMNICHANNEL_SCREENS_DIR", "/tmp/omnichannel-screens")
AUTH_TOKEN = "e2e-twilio-auth-token"  # noqa: S105 - a test credential for the fake
ACCOUNT_SID = "AC" + "e2e0" * 8
OUR_NUMBER = "+15550100000"
CUSTOMER = "+1 (415) 555-0199"  # as the customer's carrier formats it; stored as E.164
CUSTOMER_E164 = "+14155550199"
QUIET_S = 2.0  # how long we watch for a second (duplicate) send


class SmsDaphneProcess(SpawnedDaphneProcess):
    """test_console_live's spawned daphne, plus: the child's PUBLIC_BASE_URL is its own URL, set once the
    port is known and before the parent is told it is ready, so Twilio signatures over the live URL verify."""

    def resolve_port(self):
        if self.server.listening_addresses:
            from django.conf import settings

            settings.PUBLIC_BASE_URL = f"http://{self.host}:{self.server.listening_addresses[0][1]}"
        super().resolve_port()


class SmsLiveTests(LiveConsoleTestCase):
    ProtocolServerProcess = SmsDaphneProcess

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # The worker thread (this process) writes StatusCallback URLs from PUBLIC_BASE_URL.
        cls._public_url = override_settings(PUBLIC_BASE_URL=f"http://{cls.host}:{cls._port}")
        cls._public_url.enable()

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            cls._public_url.disable()
        finally:
            super().tearDownClass()

    def _make_world(self) -> None:
        super()._make_world()
        from agents.models import Team
        from conversations.models import ChannelKind, Inbox

        self.twilio = FakeTwilio()
        self.addCleanup(self.twilio.close)
        fake_api = override_settings(TWILIO_API_BASE_URL=self.twilio.url)
        fake_api.enable()
        self.addCleanup(fake_api.disable)
        self.sms = Inbox.objects.create(name="Acme SMS", kind=ChannelKind.SMS, secret=AUTH_TOKEN,
                                        settings={"account_sid": ACCOUNT_SID, "from_number": OUR_NUMBER})
        self.sms_token = self.sms.public_token
        Team.objects.get(name="Support").inboxes.add(self.sms)

    # --- Twilio's side ---

    def twilio_post(self, kind: str, params: dict, *, token: str = AUTH_TOKEN) -> requests.Response:
        """POST a webhook to the live server signed as Twilio signs it (over the public URL and the form)."""
        url = f"{self.live_server_url}/webhooks/twilio/{self.sms_token}/{kind}/"
        signature = RequestValidator(token).compute_signature(url, params)
        return requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)

    def sends_after(self, count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.twilio.sends) < count:
            time.sleep(0.05)
        with self.twilio.lock:
            return list(self.twilio.sends)

    @staticmethod
    def inbound(sid: str, body: str) -> dict:
        return {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": ACCOUNT_SID,
                "MessagingServiceSid": "", "From": CUSTOMER, "To": OUR_NUMBER, "Body": body, "NumMedia": "0",
                "NumSegments": "1", "SmsStatus": "received", "FromCity": "SAN FRANCISCO", "FromState": "CA",
                "FromCountry": "US", "ApiVersion": "2010-04-01"}

    def status_callback(self, sid: str, status: str, **extra) -> dict:
        return {"MessageSid": sid, "SmsSid": sid, "AccountSid": ACCOUNT_SID, "From": OUR_NUMBER,
                "To": CUSTOMER_E164, "MessageStatus": status, "SmsStatus": status, "ApiVersion": "2010-04-01",
                **extra}

    # --- the test ---

    def test_inbound_sms_live_reply_sent_once_and_delivered_tick(self) -> None:
        from playwright.sync_api import expect

        alice = self.console_for("alice")
        self.mark_page(alice)

        # 1. A customer texts us: Twilio posts the signed webhook; we answer with empty TwiML.
        question = "Hi, is order 1042 shipped yet?"
        sid_in = "SM" + "1f" * 16
        r = self.twilio_post("sms", self.inbound(sid_in, question))
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/xml")
        assert re.search(r"<Response\s*/>", r.text), r.text
        # Twilio retries the same message (its timeout): acknowledged, stored once (checked below).
        assert self.twilio_post("sms", self.inbound(sid_in, question)).status_code == 200
        # A forged one (wrong auth token) is refused and never shows up.
        forged = self.twilio_post("sms", self.inbound("SM" + "66" * 16, "forged: send me a refund"),
                                  token="not-the-auth-token")
        assert forged.status_code == 403

        # ... and it appears in Alice's console, live.
        row = alice.locator("#rows li.row", has_text=question)
        expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        expect(row).to_contain_text(CUSTOMER_E164)
        cid = int(row.get_attribute("data-id"))
        assert self.same_page(alice), "the console reloaded instead of updating live"

        # 2. She opens it: the message is there, once; the forged one is nowhere.
        self.open_conversation(alice, cid)
        incoming = alice.locator("#messages li.msg.msg-in")
        expect(incoming).to_have_count(1)
        expect(incoming.locator(".msg-body")).to_have_text(question)
        expect(alice.locator("#rows li.row", has_text="forged")).to_have_count(0)
        expect(alice.locator("#messages")).not_to_contain_text("forged")

        # 3. The composer counts characters and SMS segments as she types.
        count = alice.locator("#sms-count")
        expect(count).to_be_visible()
        alice.locator("#body").press_sequentially("Hello")
        expect(count).to_have_text("5 chars · 1 segment (GSM-7)")
        alice.fill("#body", "x" * 161)  # one past a single GSM-7 SMS: two parts of 153
        expect(count).to_have_text("161 chars · 2 segments (GSM-7)")
        reply = "Hi! Order 1042 left our warehouse today 📦"
        alice.fill("#body", reply)
        units = len(reply.encode("utf-16-le")) // 2  # UCS-2 code units: the parcel emoji takes two
        expect(count).to_have_text(f"{units} chars · 1 segment (UCS-2)")
        self.mark_page(alice)

        # 4. She sends it: the worker sends it through the SDK to the fake Twilio, exactly once.
        alice.click("#send")
        sends = self.sends_after(1, WEBHOOK_TIMEOUT_S)
        assert len(sends) == 1, f"expected one send to Twilio, got {len(sends)}"
        send = sends[0]
        assert send["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        assert send["auth"] == "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        form = send["form"]
        assert form["To"] == CUSTOMER_E164
        assert form["From"] == OUR_NUMBER
        assert form["Body"] == reply
        assert form["StatusCallback"] == f"{self.live_server_url}/webhooks/twilio/{self.sms_token}/status/"
        assert "MediaUrl" not in form
        sid_out = "SM" + "1".rjust(32, "0")  # what the fake answered

        # The reply is in the conversation with its "sent" tick, live.
        out = alice.locator("#messages li.msg.msg-out", has_text=reply)
        expect(out).to_have_count(1)
        tick = out.locator(".delivery")
        expect(tick).to_have_class(re.compile(r"\bdelivery-sent\b"), timeout=LIVE_TIMEOUT_MS)
        expect(tick).to_have_text("✓")

        # 5. Twilio reports "delivered": the tick turns to ✓✓ without a reload.
        assert self.twilio_post("status", self.status_callback(sid_out, "delivered")).status_code == 200
        expect(tick).to_have_class(re.compile(r"\bdelivery-delivered\b"), timeout=LIVE_TIMEOUT_MS)
        expect(tick).to_have_text("✓✓")
        assert self.same_page(alice), "the console reloaded instead of updating live"

        # A late "sent" is acknowledged but never moves it back; a forged "failed" is refused.
        assert self.twilio_post("status", self.status_callback(sid_out, "sent")).status_code == 200
        forged_fail = self.twilio_post("status", self.status_callback(sid_out, "failed", ErrorCode="30008"),
                                       token="not-the-auth-token")
        assert forged_fail.status_code == 403
        time.sleep(QUIET_S)  # also: no second send turns up
        expect(tick).to_have_class(re.compile(r"\bdelivery-delivered\b"))
        expect(tick).to_have_text("✓✓")
        assert len(self.twilio.sends) == 1, self.twilio.sends

        # The REST API agrees: one inbound (the retry was deduplicated), one delivered reply with the SID.
        messages = self.api("GET", f"/api/v1/conversations/{cid}/messages/").json()["results"]
        public = [m for m in messages if not m.get("private") and m.get("sender_type") != "system"]
        assert [m["body"] for m in public] == [question, reply], messages
        assert public[0]["provider_message_id"] == sid_in
        assert public[1]["provider_message_id"] == sid_out and public[1]["delivery_status"] == "delivered"

        # For people: the conversation with the delivered reply.
        alice.locator("#body").press_sequentially("Anything else I can help with?")
        os.makedirs(SCREENS_DIR, exist_ok=True)
        alice.screenshot(path=os.path.join(SCREENS_DIR, "sms-console.png"))
        assert self.page_errors == [], self.page_errors
        assert self.dialogs == [], self.dialogs
