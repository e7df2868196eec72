"""Browser acceptance tests: the embeddable chat widget on a customer's site, end to end.

Everything real: daphne (HTTP + websockets) in a child process, PostgreSQL, the Redis channel layer,
a Celery worker, Debian chromium driven by Playwright. The widget's one <script> tag sits on a host
page served from another origin (another port) than the app, as on a customer's website; agents
work in the console in other browser contexts.

Screenshots go to /tmp/omnichannel-screens/ (OMNICHANNEL_SCREENS_DIR): widget-desktop.png,
widget-mobile.png, console-desktop.png, console-mobile.png.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.e2e.widget_support import CHROMIUM, MOBILE, W, WidgetLiveTestCase, orm, png_bytes

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no chromium at {CHROMIUM}"),
]

XSS = "<img src=x onerror=alert(1)>"


class WidgetLiveTests(WidgetLiveTestCase):
    offline_tests = frozenset({"test_4_offline_form_becomes_a_ticket"})

    def test_1_full_chat_files_typing_and_read_receipts(self) -> None:
        from playwright.sync_api import expect

        agent = self.agent_console("alice")
        self.mark_page(agent)
        visitor = self.visitor()
        w = lambda sel="": self.w(visitor, sel)  # noqa: E731

        # Pre-chat: name, email, department.
        self.open_widget(visitor)
        self.prechat(visitor, "Vera Visitor", "vera@example.com", "Billing")

        # A text and a real PNG, through the widget's file input inside the shadow root.
        text = "Hi! I was charged twice for order #1042."
        self.visitor_says(visitor, text)
        png = png_bytes(96, 64)
        w("form.composer input[type=file]").set_input_files(
            {"name": "receipt.png", "mimeType": "image/png", "buffer": png})
        visitor_img = w(".body .msg.visitor img.att")
        expect(visitor_img).to_have_count(1)
        expect(visitor_img).to_have_attribute("alt", "receipt.png")
        self.wait_image_loaded(visitor_img)

        # The agent's inbox lists the chat live (no reload), then the agent opens it.
        row, cid = self.row_for(agent, "Vera Visitor")
        expect(row).to_contain_text("attachment")
        assert self.same_page(agent), "the console reloaded instead of updating live"
        self.open_conversation(agent, cid)
        self.mark_page(agent)  # from now on the conversation page must update live, never reload
        incoming = agent.locator("#messages li.msg.msg-in")
        expect(incoming).to_have_count(2)
        expect(incoming.first.locator(".msg-body")).to_have_text(text)
        console_img = incoming.nth(1).locator("img.att-img")
        expect(console_img).to_have_attribute("alt", "receipt.png")
        self.wait_image_loaded(console_img)
        # The side panel: pre-chat answers and the page the visitor is on.
        self.expect_visitor_panel(agent)

        # The agent opened it: the widget shows "Read ✓✓" under the visitor's latest message.
        read_marks = w(".body .msg.visitor [data-read]")
        expect(read_marks.filter(has_text="Read ✓✓")).to_have_count(1)
        expect(read_marks.last).to_have_text("Read ✓✓")

        # Typing, visitor -> agent: also right after sending a message (the widget's "stopped typing" frame for the
        # sent message must not swallow the "typing" of the next one).
        expect(agent.locator("#typing")).to_be_hidden()
        w("form.composer textarea").press_sequentially("Also, can I get a refund", delay=30)
        expect(agent.locator("#typing")).to_be_visible()
        expect(agent.locator("#typing")).to_have_text("Vera Visitor is typing…")
        self.visitor_says(visitor, "Also, can I get a refund to my card?")
        expect(incoming).to_have_count(3)
        expect(agent.locator("#typing")).to_be_hidden()
        w("form.composer textarea").press_sequentially("It was the Visa", delay=30)
        expect(agent.locator("#typing")).to_be_visible()
        self.visitor_says(visitor, "It was the Visa ending in 4242.")
        expect(incoming).to_have_count(4)
        expect(agent.locator("#typing")).to_be_hidden()

        # Typing, agent -> visitor.
        expect(w(".typing")).not_to_contain_text("is typing")
        reply = "Sorry about that, Vera! I have refunded the duplicate charge."
        agent.locator("#body").press_sequentially("Sorry about", delay=30)
        expect(w(".typing")).to_have_text("Alice is typing…")
        agent.fill("#body", reply)
        agent.click("#send")

        # The visitor gets the reply live, with the agent's name; the typing line clears.
        agent_msg = w(".body .msg.agent").filter(has_text=reply)
        expect(agent_msg).to_have_count(1)
        expect(agent_msg.locator(".who")).to_have_text("Alice")
        expect(w(".typing")).not_to_contain_text("is typing")
        expect(w("header .agent")).to_contain_text("Alice")
        expect(w(".body .msg.system").filter(has_text="Alice joined the chat")).to_have_count(1)
        assert self.same_page(agent), "the conversation page reloaded instead of updating live"

        # The visitor saw it: the console marks the reply read.
        reply_li = agent.locator("#messages li.msg.msg-out", has_text=reply)
        expect(reply_li.locator(".delivery")).to_contain_text("read")
        expect(reply_li.locator(".delivery")).to_have_class(re.compile(r"\bdelivery-read\b"))
        reply_api = [m for m in self.messages_of(cid) if m["body"] == reply]
        assert len(reply_api) == 1 and reply_api[0]["delivery_status"] == "read", reply_api
        # The agent's name sits on its own line above the reply (not squeezed into a column beside it).
        assert self.line_count(agent_msg.locator(".who")) == 1
        # The pre-chat answers are still in the panel after more messages came over the visitor's socket.
        agent.reload()
        self.wait_live(agent)
        self.expect_visitor_panel(agent)

        # Screenshots: the widget open with messages, the console with the chat open (desktop and phone).
        self.shoot(visitor, "widget-desktop.png")
        self.shoot(agent, "console-desktop.png")
        phone = self.agent_console("alice", **MOBILE)
        phone.goto(f"{self.live_server_url}/console/c/{cid}/")
        self.wait_live(phone)
        expect(phone.locator("#messages li.msg-in")).to_have_count(4)
        send = phone.locator("#send").bounding_box()
        assert send["x"] >= 0 and send["x"] + send["width"] <= 390, f"Send is off screen on a phone: {send}"
        self.shoot(phone, "console-mobile.png")

        assert self.dialogs == [], self.dialogs
        assert self.page_errors == [], self.page_errors

    def test_2_network_cut_loses_and_duplicates_nothing(self) -> None:
        from playwright.sync_api import expect

        agent = self.agent_console("alice")
        visitor = self.visitor()
        w = lambda sel="": self.w(visitor, sel)  # noqa: E731
        self.open_widget(visitor)
        self.prechat(visitor, "Nick Network", "nick@example.com", "Support")
        self.visitor_says(visitor, "Hello, anyone there?")
        _, cid = self.row_for(agent, "Nick Network")
        self.open_conversation(agent, cid)
        self.mark_page(agent)
        self.agent_says(agent, "Hi Nick, Alice here. How can I help?")
        expect(w(".body .msg.agent").filter(has_text="Hi Nick, Alice here.")).to_have_count(1)

        # The visitor's network goes away: the widget drops its socket and says so.
        visitor.context.set_offline(True)
        expect(visitor.locator(W)).to_have_attribute("data-state", "offline")

        # Meanwhile the agent sends two replies and the visitor writes two messages (kept as pending).
        replies = ["Are you still there, Nick?", "No rush, I'll keep this chat open for you."]
        for reply in replies:
            self.agent_says(agent, reply)
        mine = ["Sorry, my train went into a tunnel.", "Still want to swap the boots for a larger size."]
        for text in mine:
            bubble = self.visitor_says(visitor, text, wait=False)
            expect(bubble).to_have_class("msg visitor pending")
            expect(bubble.locator(".meta")).to_have_text("Will send when you're back online")
        visitor.wait_for_timeout(1000)
        # Nothing crossed while offline (the cut is real).
        for reply in replies:
            expect(w(".body .msg.agent").filter(has_text=reply)).to_have_count(0)
        for text in mine:
            expect(agent.locator("#messages li.msg-in", has_text=text)).to_have_count(0)
        assert len(visitor.evaluate("k => JSON.parse(localStorage.getItem(k))",
                                    f"omnichannel:{self.token}:outbox")) == 2
        expect(visitor.locator(W)).to_have_attribute("data-state", "offline")

        # Back online: everything arrives exactly once, in order, on both sides.
        visitor.context.set_offline(False)
        expect(visitor.locator(W)).to_have_attribute("data-state", "live")
        for reply in replies:
            expect(w(".body .msg.agent").filter(has_text=reply)).to_have_count(1)
        for text in mine:
            expect(w(".body .msg.visitor").filter(has_text=text)).to_have_class("msg visitor")
            expect(agent.locator("#messages li.msg-in", has_text=text)).to_have_count(1)
        expect(w(".body .pending")).to_have_count(0)
        visitor.wait_for_timeout(1500)  # late duplicates (a second socket, a replay overlap) would land now

        bubbles = w(".body .msg").all_inner_texts()
        positions = []
        for text in [*replies, *mine]:
            hits = [i for i, b in enumerate(bubbles) if text in b]
            assert len(hits) == 1, (text, bubbles)
            positions.append(hits[0])
        assert positions[0] < positions[1] and positions[2] < positions[3], bubbles
        for text in mine:
            expect(agent.locator("#messages li.msg-in", has_text=text)).to_have_count(1)
        bodies = [m["body"] for m in self.messages_of(cid)]
        for text in [*replies, *mine]:
            assert bodies.count(text) == 1, (text, bodies)
        assert bodies.index(mine[0]) < bodies.index(mine[1]), bodies
        assert visitor.evaluate("k => JSON.parse(localStorage.getItem(k))", f"omnichannel:{self.token}:outbox") == []
        open_sockets = [ws for ws in self.sockets["visitor"] if not ws.is_closed()]
        assert len(open_sockets) == 1, f"{len(open_sockets)} widget sockets open after the reconnect"
        assert self.same_page(agent)
        assert self.dialogs == [], self.dialogs
        assert self.page_errors == [], self.page_errors

    def test_3_visitor_ends_chat_rates_it_and_agent_wraps_up(self) -> None:
        from playwright.sync_api import expect

        from campaigns.models import ChatSurvey, WrapUp
        from omnichannel.models import RealtimeStream

        agent = self.agent_console("alice")
        # A slow side panel on demand: while window.__e2eHoldPanel is a promise, panel refreshes wait for it.
        agent.context.add_init_script("""{ const fetch0 = window.fetch;
            window.fetch = (url, opts) => fetch0(url, opts).then(r =>
                String(url).includes("/panel/") && window.__e2eHoldPanel ? window.__e2eHoldPanel.then(() => r) : r); }""")
        visitor = self.visitor(who="phone", **MOBILE)
        w = lambda sel="": self.w(visitor, sel)  # noqa: E731
        self.open_widget(visitor)
        # On a phone the panel is full screen, and nothing covers its controls.
        box = w("section.panel").bounding_box()
        assert box == {"x": 0, "y": 0, "width": 390, "height": 844}, box
        self.prechat(visitor, "Erin Ender", "erin@example.com", "Sales")
        send = w("form.composer button[type=submit]")
        assert self.on_top(visitor, send), "something covers the widget's Send button"
        self.visitor_says(visitor, "Do the Summit 40 packs come in green?")
        _, cid = self.row_for(agent, "Erin Ender")
        self.open_conversation(agent, cid)
        self.agent_says(agent, "They do! Green and slate grey, both in stock.")
        expect(w(".body .msg.agent").filter(has_text="Green and slate grey")).to_have_count(1)
        self.visitor_says(visitor, "Great, thanks!")
        self.shoot(visitor, "widget-mobile.png")

        # The visitor ends the chat (header button, then the inline confirmation) and rates it: 4 stars and a
        # comment. The console's panel refresh for "closed" is held until the survey's event has reached it too.
        agent.evaluate("() => { window.__e2eHoldPanel = new Promise(go => { window.__e2eReleasePanel = go; }); }")
        w("header button.end").click()
        confirm = w("form.confirm-end")
        expect(confirm).to_contain_text("End this chat?")
        confirm.locator("button.primary").click()
        expect(w(".stars button")).to_have_count(5)
        w('.stars button[title="Good"]').click()
        expect(w('.stars button[aria-pressed="true"]')).to_have_text("4 ★")
        w("#omni-comment").fill("Quick and friendly, thanks!")
        w("button.primary").filter(has_text="Send feedback").click()
        expect(w(".body .note").filter(has_text="Thank you for your feedback!")).to_be_visible()
        expect(w(".stars")).to_have_count(0)
        expect(w("section.panel > div[data-view]")).to_have_attribute("data-view", "ended")
        expect(w(".note").filter(has_text="This chat has ended.")).to_be_visible()
        expect(w("header button.end")).to_be_hidden()
        expect(w(".body .msg.system").filter(has_text="Chat ended by the visitor")).to_have_count(1)
        survey = orm(lambda: ChatSurvey.objects.filter(conversation_id=cid).values("rating", "comment").first())
        assert survey == {"rating": 4, "comment": "Quick and friendly, thanks!"}, survey
        last = orm(lambda: RealtimeStream.objects.get(name=f"inbox.{self.inbox.id}").last_seq)
        agent.wait_for_function("e => window.consoleEvents.includes(e)", arg=f"inbox.{self.inbox.id}:{last}")
        agent.evaluate("() => { window.__e2eHoldPanel = null; window.__e2eReleasePanel(); }")

        # The console: closed, the rating in the panel (an event that came during a refresh is not lost), the
        # wrap-up form; the agent saves a wrap-up.
        panel = agent.locator("#panel")
        expect(panel).to_contain_text("Visitor rating: 4/5", timeout=3000)
        expect(panel).to_contain_text("Quick and friendly, thanks!")
        expect(agent.locator("#messages li.msg", has_text="Chat ended by the visitor")).to_have_count(1)
        expect(agent.locator("#end-chat")).to_have_count(0)
        expect(agent.locator("#wrap-up")).to_be_visible()
        agent.select_option("#f-disp", "Sales lead")
        agent.fill("#f-wnote", "Wants a green Summit 40; send the colour chart.")
        agent.click("#wrap-up button[type=submit]")
        expect(panel).to_contain_text("Wrap-up: Sales lead — Wants a green Summit 40; send the colour chart.")
        expect(agent.locator("#wrap-up")).to_have_count(0)
        wrap = orm(lambda: WrapUp.objects.filter(conversation_id=cid).values(
            "disposition", "note", "agent__username").first())
        assert wrap == {"disposition": "Sales lead", "note": "Wants a green Summit 40; send the colour chart.",
                        "agent__username": "alice"}, wrap
        detail = self.api("GET", f"/api/v1/conversations/{cid}/").json()
        assert detail["status"] == "closed", detail
        assert self.dialogs == [], self.dialogs
        assert self.page_errors == [], self.page_errors

    def test_4_offline_form_becomes_a_ticket(self) -> None:
        from playwright.sync_api import expect

        agent = self.agent_console("alice")  # offline: nobody can chat now
        expect(agent.locator("#presence")).to_have_value("offline")
        self.mark_page(agent)
        visitor = self.visitor()
        w = lambda sel="": self.w(visitor, sel)  # noqa: E731
        self.open_widget(visitor)
        expect(w("section.panel > div[data-view]")).to_have_attribute("data-view", "offline")
        expect(w("form .note")).to_have_text("We're offline right now. Leave a message and we'll answer by email.")
        expect(w("form.composer")).to_have_count(0)
        body = "Do you ship tents to Norway? I'd need one by June."
        w("#omni-f-name").fill("Olga Offline")
        w("#omni-f-email").fill("olga@example.com")
        w("#omni-f-body").fill(body)
        w("form button[type=submit]").click()
        expect(w("[role=status]")).to_have_text("Thanks! We'll answer you by email.")
        assert self.wait_for_response(visitor, "visitor", "/offline/") == 201

        # The ticket shows up in the console, live, tagged.
        row, cid = self.row_for(agent, "Olga Offline")
        expect(row.locator(".tag")).to_have_text("offline-message")
        expect(row.locator(".row-preview")).to_contain_text(body)
        assert self.same_page(agent), "the console reloaded instead of updating live"
        self.open_conversation(agent, cid)
        expect(agent.locator("#messages li.msg-in .msg-body")).to_have_text(body)
        expect(agent.locator("#f-tags")).to_have_value("offline-message")
        detail = self.api("GET", f"/api/v1/conversations/{cid}/").json()
        assert detail["tags"] == ["offline-message"], detail
        assert detail["contact"]["email"] == "olga@example.com", detail
        assert detail["subject"] == "Offline message from Olga Offline", detail
        assert self.dialogs == [], self.dialogs
        assert self.page_errors == [], self.page_errors

    def test_5_origins_tokens_and_html(self) -> None:
        from playwright.sync_api import expect

        agent = self.agent_console("alice")
        site_origin, evil_origin = self.site_url.rstrip("/"), self.evil_url.rstrip("/")

        # The same snippet on a site whose origin is not allowed: the session API says 403 (without CORS headers,
        # so the page cannot even read it) and no launcher appears.
        evil = self.visitor(self.evil_url, who="evil-site")
        assert self.wait_for_response(evil, "evil-site", "/session/") in (0, 403)
        evil.wait_for_timeout(800)
        expect(evil.locator(W)).to_have_count(0)
        expect(self.w(evil, "button.launcher")).to_have_count(0)
        refused = self.widget_api("session", {}, origin=evil_origin)
        assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
        allowed = self.widget_api("session", {}, origin=site_origin)
        assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == site_origin
        genuine = allowed.json()["visitor_token"]
        # ... and its socket is refused from there, even with a genuine visitor token.
        from_evil = self.try_socket(evil, genuine)
        assert not from_evil["opened"] and from_evil["frames"] == [], from_evil

        # A visitor on the allowed site writes HTML (as text, everywhere).
        evil_name = "<b onmouseover=alert(2)>Mallory</b>"
        visitor = self.visitor(who="mallory")
        w = lambda sel="": self.w(visitor, sel)  # noqa: E731
        self.open_widget(visitor)
        self.prechat(visitor, evil_name, "mallory@example.com", "Support")
        bubble = self.visitor_says(visitor, XSS)
        expect(bubble.locator("span")).to_have_text(XSS)
        expect(w(".body img")).to_have_count(0)
        row, cid = self.row_for(agent, "Mallory")
        expect(row.locator(".row-name")).to_have_text(evil_name)
        expect(row.locator(".row-preview")).to_contain_text(XSS)
        expect(row.locator("img, b")).to_have_count(0)
        self.open_conversation(agent, cid)
        expect(agent.locator("#messages li.msg-in .msg-body")).to_have_text(XSS)
        expect(agent.locator("#messages img, #messages b, #panel img, #panel b")).to_have_count(0)
        agent_html = '<img src=x onerror=alert(3)><script>alert("agent")</script>'
        self.agent_says(agent, agent_html)
        expect(w(".body .msg.agent span:not(.who)").filter(has_text="onerror")).to_have_text(agent_html)
        expect(w(".body img, .body script")).to_have_count(0)

        # Control: from the allowed origin, the visitor's own token opens the socket.
        token = self.stored_visitor_token(visitor, self.token)
        assert token and token != genuine
        ok = self.try_socket(visitor, token)
        assert ok["opened"] and '"hello"' in ok["frames"][0], ok
        # A forged or garbage token reaches nothing: the socket is closed with 4401 (start a new session)
        # before any frame is sent.
        forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        for bad in (forged, "garbage", genuine.replace(":", ":x", 1)):
            result = self.try_socket(visitor, bad)
            assert result["closed"] and result["code"] == 4401 and result["frames"] == [], (bad, result)

        # A browser whose stored visitor token was tampered with gets a fresh anonymous visitor, not Mallory's chat.
        key = f"omnichannel:{self.token}:visitor"
        thief = self.visitor(who="forger", init_script=(
            f"if (!sessionStorage.getItem('e2e-planted')) {{ sessionStorage.setItem('e2e-planted', '1');"
            f" localStorage.setItem({json.dumps(key)}, JSON.stringify({json.dumps(forged)})); }}"))
        self.open_widget(thief)
        expect(self.w(thief, "section.panel > div[data-view]")).to_have_attribute("data-view", "prechat")
        expect(self.w(thief, ".body .msg.visitor")).to_have_count(0)
        expect(self.w(thief, ".body")).not_to_contain_text("onerror")
        fresh = self.stored_visitor_token(thief, self.token)
        assert fresh and fresh not in (forged, token), fresh
        # Mallory's conversation holds exactly what was said in it; the forger added nothing anywhere.
        assert [(m["sender_type"], m["body"]) for m in self.messages_of(cid)] == [
            ("contact", XSS), ("system", "Alice joined the chat"), ("agent", agent_html)]
        expect(agent.locator("#rows li.row")).to_have_count(1)

        assert self.dialogs == [], self.dialogs
        assert self.page_errors == [], self.page_errors

    # --- helpers ---

    def expect_visitor_panel(self, agent) -> None:
        from playwright.sync_api import expect

        chat_panel = agent.locator("#panel section[aria-labelledby=ph-chat]")
        for label, value in (("Name", "Vera Visitor"), ("Email", "vera@example.com"), ("Department", "Billing")):
            expect(chat_panel.locator("dt", has_text=re.compile(f"^{label}$"))).to_have_count(1)
            expect(chat_panel.locator("dd", has_text=re.compile(f"^{re.escape(value)}$"))).to_have_count(1)
        page_link = chat_panel.locator("dd a")
        expect(page_link).to_have_text("Acme Outdoor — tents, packs and boots")
        expect(page_link).to_have_attribute("href", self.site_url)

    @staticmethod
    def on_top(page, locator) -> bool:
        """Whether the element gets clicks at its centre (nothing drawn over it)."""
        return locator.evaluate("""el => { const b = el.getBoundingClientRect();
            const hit = el.getRootNode().elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
            return hit === el || el.contains(hit); }""")

    @staticmethod
    def line_count(locator) -> int:
        """How many lines the element's text wraps onto."""
        return locator.evaluate("""el => { const r = document.createRange(); r.selectNodeContents(el);
            return new Set(Array.from(r.getClientRects()).map(x => Math.round(x.top))).size; }""")

    @staticmethod
    def wait_image_loaded(img) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if img.evaluate("i => i.complete && i.naturalWidth > 0"):
                return
            time.sleep(0.05)
        raise AssertionError(f"image {img.get_attribute('src')} did not load")

    def test_6_pop_out_window_continues_the_same_chat(self) -> None:
        """The pop-out window is served from the app's origin (its own storage): the site's widget hands the
        visitor's session over, so the window shows the same chat, asks no pre-chat again, and keeps the page."""
        from playwright.sync_api import expect

        visitor = self.visitor()
        self.open_widget(visitor)
        self.prechat(visitor, "Pia Popout", "pia@example.com", "Sales")
        self.visitor_says(visitor, "Hello from the shop page")
        with visitor.context.expect_page() as opened:
            self.w(visitor, 'button[title="Open in a new window"]').click()
        popup = opened.value
        self._watch(popup, "popup")
        popup.wait_for_load_state()
        assert popup.url.startswith(self.live_server_url + "/widget/popup/") and "#" not in popup.url
        expect(self.w(popup, ".body .msg.visitor", ).filter(has_text="Hello from the shop page")).to_have_count(1)
        expect(self.w(popup, "section.panel > div[data-view=prechat]")).to_have_count(0)
        self.visitor_says(popup, "And now from the pop-out")
        messages = orm(lambda: list(__import__("conversations.models", fromlist=["Message"]).Message.objects
                                    .filter(direction="in").values_list("conversation_id", "body")))
        assert len({cid for cid, _ in messages}) == 1, messages  # one chat, not a new anonymous visitor
        session_page = orm(lambda: list(__import__("campaigns.models", fromlist=["VisitorSession"]).VisitorSession
                                        .objects.values_list("page_url", flat=True)))
        assert session_page == [self.site_url], session_page  # the page the visitor is on, not the pop-out's
