"""Browser acceptance test: an SLA badge counting down live in the agent console, and the breach sweep.

Same stack as test_console_live.py (daphne child process, PostgreSQL, Redis channel layer, a Celery
worker thread on the test queue, Debian chromium through Playwright), plus a real `celery beat`
subprocess sending sla.tasks.sweep_sla every 5 s to that worker.

A customer message arrives under a policy with a 1-minute first-response target: the agent's inbox
row shows a green SLA badge. The clock is then moved forward (started earlier: due in a few seconds, the
warning sooner), which the console learns through the same realtime "sla" event production sends. With
no reload, the badge turns amber at the warning time and red at the due time (the browser's own timer);
the sweep records the warning and the breach once each, and their escalations (tags, a raised priority)
appear in the row live.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from tests.e2e.test_console_live import CHROMIUM, LiveConsoleTestCase

SCREENS = "/tmp/omnichannel-screens"
SWEEP_INTERVAL = 5.0  # omnichannel/celery.py: "sla-sweep" every 5 s
WARN_IN = 4.0  # after the clock is moved: seconds to the warning ...
DUE_IN = WARN_IN + SWEEP_INTERVAL + 4.0  # ... and to the breach (the warning's sweep comes first)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no chromium at {CHROMIUM}"),
]


def in_thread(fn, *args):
    """Run ORM code in a thread of its own: this one runs Playwright's event loop (SynchronousOnlyOperation)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="orm")
    thread.start()
    thread.join(30)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def move_clock(conversation_id: int, warn_in: float, due_in: float) -> tuple[datetime, datetime]:
    """Time travel: the clock started earlier, so it is due in `due_in` s; the warning in `warn_in` s.

    Started, running-since and due move together (a later re-application of the policy keeps the due
    time); the conversation's summary is refreshed and published as production does.
    """
    from conversations.models import Conversation
    from sla.actions import _refresh_summary, db_now
    from sla.models import SlaClock

    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        clock = SlaClock.objects.select_for_update().get(conversation=conversation, metric="first_response")
        now = db_now()
        shift = clock.due_at - (now + timedelta(seconds=due_in))
        clock.started_at -= shift
        clock.running_since -= shift
        clock.due_at -= shift
        clock.warn_at = now + timedelta(seconds=warn_in)
        clock.save()
        _refresh_summary(conversation)
    return clock.warn_at, clock.due_at


def sla_events(conversation_id: int) -> list[tuple[str, datetime, dict]]:
    from sla.models import SlaEvent

    return list(SlaEvent.objects.filter(conversation_id=conversation_id).order_by("id")
                .values_list("kind", "at", "data"))


class SlaLiveTests(LiveConsoleTestCase):
    def _make_world(self) -> None:
        super()._make_world()
        from conversations.actions import do_receive_inbound_message
        from sla.models import SlaPolicy

        SlaPolicy.objects.create(
            name="Tiny", warn_at_percent=50,
            targets={"first_response": {p: 1 for p in ("low", "normal", "high", "urgent")}},
            escalations={"warning": [{"action": "add_tag", "tag": "sla-at-risk"}],
                         "breach": [{"action": "raise_priority"}, {"action": "add_tag", "tag": "sla-breached"}]})
        result = do_receive_inbound_message(inbox=self.shop_api, source_id="sla-cust", body="My parcel never came",
                                            contact_name="Sam Waiting", provider_message_id="sla-msg-1")
        self.cid = result.message.conversation_id
        clock = result.message.conversation.sla_clocks.get(metric="first_response")
        assert clock.target_seconds == 60 and clock.due_at is not None

    def _start_beat(self):
        from tests.sla.test_tasks_fault import CeleryProcess, child_database_url

        workdir = tempfile.mkdtemp(prefix="sla-live-beat-")
        self.addCleanup(shutil.rmtree, workdir, True)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
               "PYTHONPATH": str(settings.BASE_DIR), "REDIS_URL": settings.REDIS_URL,
               "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,  # the worker thread's queue
               "DATABASE_URL": child_database_url()}
        beat = CeleryProcess("beat", ["beat", "--loglevel=INFO", "-s", os.path.join(workdir, "schedule"),
                                      "--pidfile="], env, Path(workdir), r"beat: Starting")
        beat.start()
        self.addCleanup(beat.kill)
        return beat

    @staticmethod
    def badge_times(badge) -> tuple[datetime, datetime]:
        return (datetime.fromisoformat(badge.get_attribute("data-warn")),
                datetime.fromisoformat(badge.get_attribute("data-due")))

    def test_badge_turns_amber_then_red_live_and_the_breach_escalates(self) -> None:
        from playwright.sync_api import expect

        os.makedirs(SCREENS, exist_ok=True)
        beat = self._start_beat()
        alice = self.console_for("alice")  # the inbox list
        bob = self.console_for("bob")  # the conversation open: the panel's badge too
        self.open_conversation(bob, self.cid)
        for page in (alice, bob):
            self.mark_page(page)
        row = self.row(alice, self.cid)
        badge = row.locator(".sla")
        panel_badge = bob.locator("#panel .sla-list .sla")

        # 1. The new conversation is listed with a green badge: a minute to answer.
        expect(row).to_contain_text("Sam Waiting")
        expect(badge).to_have_attribute("data-sla", "green")
        expect(badge).to_have_class(re.compile(r"\bsla-green\b"))
        expect(badge).to_have_text(re.compile(r"^SLA \d+s left$"))
        expect(panel_badge).to_have_attribute("data-sla", "green")
        expect(panel_badge).to_have_text(re.compile(r"^SLA \d+s left$"))  # the panel counts down too
        deadline = time.monotonic() + 30
        while not beat.is_ready():  # the sweeps start 5 s after beat does
            assert time.monotonic() < deadline, beat.logs()
            time.sleep(0.2)

        # 2. Time passes: the clock is now due in DUE_IN s, at risk in WARN_IN s. The row is refreshed live.
        warn_at, due_at = in_thread(move_clock, self.cid, WARN_IN, DUE_IN)
        moved = time.monotonic()
        expect(badge).to_have_attribute("data-due", re.compile(re.escape(due_at.isoformat()[:19])))
        assert abs(self.badge_times(badge)[0] - warn_at) < timedelta(milliseconds=1)
        expect(badge).to_have_attribute("data-sla", "green")
        expect(panel_badge).to_have_attribute("data-due", re.compile(re.escape(due_at.isoformat()[:19])))
        expect(panel_badge).to_have_attribute("data-sla", "green")
        assert self.same_page(alice), "the console reloaded instead of updating live"

        # 3. Amber at the warning time, from the browser's own countdown.
        expect(badge).to_have_attribute("data-sla", "amber", timeout=(WARN_IN + 3) * 1000)
        # (tolerances allow for the browser estimating the server's clock from the page load under load)
        assert time.monotonic() - moved >= WARN_IN - 2.5, "amber well before the warning time"
        expect(badge).to_have_class(re.compile(r"\bsla-amber\b"))
        expect(badge).to_have_text(re.compile(r"^SLA \d+s left$"))
        expect(panel_badge).to_have_attribute("data-sla", "amber")
        alice.screenshot(path=os.path.join(SCREENS, "sla-amber.png"))

        # The sweep records the warning; its escalation tags the conversation: the row refreshes, still amber.
        expect(row.locator(".tag", has_text="sla-at-risk")).to_be_visible(timeout=(SWEEP_INTERVAL + 3) * 1000)
        expect(badge).to_have_attribute("data-sla", "amber")
        expect(bob.locator("#panel #f-tags")).to_have_value(re.compile(r"\bsla-at-risk\b"))
        expect(panel_badge).to_have_attribute("data-sla", "amber")  # the panel was re-rendered, still amber
        alice.screenshot(path=os.path.join(SCREENS, "sla-amber-tagged.png"))

        # 4. Red at the due time.
        expect(badge).to_have_attribute("data-sla", "red", timeout=(DUE_IN + 3) * 1000)
        assert time.monotonic() - moved >= DUE_IN - 2.5, "red well before the due time"
        expect(badge).to_have_class(re.compile(r"\bsla-red\b"))
        expect(badge).to_have_text(re.compile(r"^SLA \d+s over$"))
        due_shown = self.badge_times(badge)[1]  # the warning's re-application may add < 1 s (whole seconds)
        assert timedelta(0) <= due_shown - due_at < timedelta(seconds=1), (due_shown, due_at)

        # 5. The sweep records the breach; the escalations appear in the row live and it stays red.
        expect(row.locator(".tag", has_text="sla-breached")).to_be_visible(timeout=(SWEEP_INTERVAL + 5) * 1000)
        expect(row.locator(".prio")).to_have_text("High")
        expect(badge).to_have_attribute("data-sla", "red")
        # Re-applying the policy (raise_priority) keeps the time it fell due: the "over" count goes on.
        assert self.badge_times(badge)[1] == due_shown, (self.badge_times(badge), due_shown)
        # Still counting time since the breach, not restarted: within a few countdown ticks of the refreshed row
        # (a sweep right at the due time shows "0s over" first; the browser's estimate of the server's clock may
        # lag it by a fraction of a second).
        deadline = time.monotonic() + 3.5
        over = 0
        while over < 1 and time.monotonic() < deadline:
            time.sleep(0.25)
            over = int(re.fullmatch(r"SLA (\d+)s over", badge.text_content()).group(1))
        expect(badge).to_have_attribute("data-sla", "red")
        assert over >= 1, over
        expect(bob.locator("#panel #f-tags")).to_have_value(re.compile(r"\bsla-breached\b"))
        expect(panel_badge).to_have_attribute("data-sla", "red")
        expect(panel_badge).to_have_text(re.compile(r"^SLA \d+s over$"))
        alice.screenshot(path=os.path.join(SCREENS, "sla-red.png"))
        bob.screenshot(path=os.path.join(SCREENS, "sla-red-panel.png"))
        for page in (alice, bob):
            assert self.same_page(page), "the console reloaded instead of updating live"

        # The database agrees: warned once, breached once, each within one sweep interval (+ margin).
        events = in_thread(sla_events, self.cid)
        kinds = [kind for kind, _, _ in events]
        assert kinds.count("warned") == 1 and kinds.count("breached") == 1, kinds
        at = {kind: when for kind, when, _ in events}
        assert timedelta(0) <= at["warned"] - warn_at <= timedelta(seconds=SWEEP_INTERVAL + 2), events
        assert timedelta(0) <= at["breached"] - due_at <= timedelta(seconds=SWEEP_INTERVAL + 2), events
        assert self.page_errors == [], self.page_errors
        assert self.dialogs == [], self.dialogs
