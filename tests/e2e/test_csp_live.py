"""Issue 14 in a real browser: the Content-Security-Policy blocks nothing the product's own pages need.

Debian chromium reports every blocked script, style, image or connection as a `securitypolicyviolation` event
(and a console error). Waiting uses locators, not `wait_for_function`: Playwright evaluates those strings in
the page, which the policy refuses ('unsafe-eval'), as it should. The console, the login form, the admin (with the widget snippet's select-all), a report
and the widget's pop-up must raise none, and the console's websocket (connect-src, and the origin check of
omnichannel/consumers.py) must go live.
"""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from tests.e2e.test_console_live import CHROMIUM, LIVE_TIMEOUT_MS, LiveConsoleTestCase
from tests.e2e.widget_support import WidgetDaphneProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no chromium at {CHROMIUM}"),
]

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.effectiveDirective + " " + (e.blockedURI || "inline") + " " + e.sourceFile + ":" + e.lineNumber);
});
"""


class CspLiveTests(LiveConsoleTestCase):
    ProtocolServerProcess = WidgetDaphneProcess  # PUBLIC_BASE_URL is the live server's URL: the pop-up talks to it

    def _make_world(self) -> None:
        super()._make_world()
        from campaigns.models import WidgetConfig
        from conversations.models import ChannelKind, Inbox

        self._make_agent("root", role="admin")
        self.chat = Inbox.objects.create(name="Website chat", kind=ChannelKind.WEBCHAT)
        self.widget_config = WidgetConfig.objects.create(inbox=self.chat)
        self.chat_token = self.chat.public_token

    def test_the_product_pages_raise_no_violation(self):
        context = self.browser.new_context(viewport={"width": 1400, "height": 900})
        self._browser_stack.callback(context.close)
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        context.add_init_script(RECORD_VIOLATIONS)
        console_errors: list[str] = []
        page = context.new_page()
        page.on("console", lambda msg: console_errors.append(msg.text)
                if "Content Security Policy" in msg.text else None)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        seen: dict[str, list[str]] = {}

        def visit(path: str, check=None) -> None:
            page.goto(self.live_server_url + path)
            page.wait_for_load_state("load")
            if check:
                check()
            page.wait_for_timeout(300)
            seen[path] = page.evaluate("window.__csp")

        page.goto(self.live_server_url + "/accounts/login/?next=/console/")
        seen["/accounts/login/"] = page.evaluate("window.__csp")
        page.fill("#id_username", "root")
        page.fill("#id_password", "pw-root")
        page.click("form button[type=submit]")
        page.wait_for_url(self.live_server_url + "/console/")
        expect(page.locator("#conn")).to_have_text("live")  # the socket is up
        seen["/console/"] = page.evaluate("window.__csp")

        def select_all_snippet() -> None:
            box = page.locator("textarea[data-select-on-click]")
            box.click()
            assert page.evaluate("(() => { const t = document.querySelector('textarea[data-select-on-click]');"
                                 " return t.selectionStart === 0 && t.selectionEnd === t.value.length"
                                 " && t.value.length > 0; })()")

        visit("/console/profile/")
        visit("/accounts/password/")
        visit("/admin/")
        visit(f"/admin/campaigns/widgetconfig/{self.widget_config.pk}/change/", select_all_snippet)
        visit("/admin/auth/user/add/")
        visit("/admin/conversations/conversation/")
        visit("/reports/sla/")
        visit(f"/widget/popup/{self.chat_token}/", lambda: expect(
            page.locator("div[data-omnichannel] section.panel")).to_be_visible())  # rendered, its styles applied
        assert {path: found for path, found in seen.items() if found} == {}
        assert console_errors == [] and self.page_errors == []
