"""Issue 14: every websocket compares the page's origin in scheme, host and port.

The console socket authenticates with the session cookie, so a page on another port (or scheme) of the same
host must not open it (cross-site websocket hijacking: it changed an agent's presence). The widget's socket
and HTTP endpoints compare against the widget config's allowed origins the same way; a default port (80 for
http, 443 for https) is the same origin as none.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from campaigns import actions
from campaigns.models import WidgetConfig
from conversations.models import ChannelKind, Inbox
from omnichannel.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_origins_compare_scheme_host_and_port():
    from omnichannel.consumers import origin_in, parse_origin

    assert parse_origin("https://Shop.Example") == ("https", "shop.example", 443)
    assert parse_origin("https://shop.example:443/") == parse_origin("https://shop.example")
    assert parse_origin("http://shop.example:80") == parse_origin("http://shop.example")
    assert parse_origin("http://[::1]:8000") == ("http", "::1", 8000)
    for bad in ("", "null", "shop.example", "ftp://shop.example", "https://", "https://shop.example:99999"):
        assert parse_origin(bad) is None, bad
    allowed = ["https://shop.example", "http://localhost:8000", "https://*.acme.example"]
    assert origin_in("https://shop.example:443", allowed)
    assert not origin_in("https://shop.example:8443", allowed)
    assert not origin_in("http://shop.example", allowed)
    assert origin_in("http://localhost:8000", allowed)
    assert not origin_in("http://localhost:8001", allowed)
    assert not origin_in("http://localhost", allowed)
    assert origin_in("https://eu.acme.example", allowed) and origin_in("https://acme.example", allowed)
    assert not origin_in("https://evilacme.example", allowed) and not origin_in("http://eu.acme.example", allowed)
    assert not origin_in("", allowed) and not origin_in("null", allowed)


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _console(user, *, origin: bytes | None, host: bytes | None = b"testserver", scheme: str | None = None):
    headers = [(b"cookie", await database_sync_to_async(_cookie)(user))]
    if origin is not None:
        headers.append((b"origin", origin))
    if host is not None:
        headers.append((b"host", host))
    comm = WebsocketCommunicator(application, "/ws/console/", headers=headers)
    if scheme:
        comm.scope["scheme"] = scheme
    connected, _ = await comm.connect(timeout=5)
    if connected:
        frame = await comm.receive_json_from(timeout=5)
        assert frame["type"] == "hello"
        await comm.disconnect()
    return connected


async def test_console_socket_refuses_another_port_scheme_or_no_origin(world, settings):
    settings.PUBLIC_BASE_URL = "https://support.example"
    settings.CSRF_TRUSTED_ORIGINS = ["https://support.example", "https://*.agents.example"]
    # The page's own origin (the socket's Host, scheme from the socket), explicit default port or not.
    assert await _console(world.alice, origin=b"http://testserver")
    assert await _console(world.alice, origin=b"http://testserver:80")
    assert await _console(world.alice, origin=b"http://testserver:8000", host=b"testserver:8000")
    assert await _console(world.alice, origin=b"https://testserver", scheme="wss")
    # Another port or scheme of the same host: refused (this is what changed an agent's presence).
    assert not await _console(world.alice, origin=b"http://testserver:8001")
    assert not await _console(world.alice, origin=b"http://testserver:8001", host=b"testserver:8000")
    assert not await _console(world.alice, origin=b"https://testserver")
    assert not await _console(world.alice, origin=b"http://testserver", scheme="wss")
    # No Origin at all, or an opaque one: refused.
    assert not await _console(world.alice, origin=None)
    assert not await _console(world.alice, origin=b"null")
    # A Host we do not serve does not make its own origin ours (DNS rebinding).
    assert not await _console(world.alice, origin=b"http://evil.example", host=b"evil.example")
    # The trusted origins (PUBLIC_BASE_URL, CSRF_TRUSTED_ORIGINS), whatever the Host.
    assert await _console(world.alice, origin=b"https://support.example:443")
    assert await _console(world.alice, origin=b"https://eu.agents.example")
    assert not await _console(world.alice, origin=b"https://support.example:8443")
    assert not await _console(world.alice, origin=b"http://support.example")


def _widget_token():
    inbox = Inbox.objects.create(name="Website chat", kind=ChannelKind.WEBCHAT)
    WidgetConfig.objects.create(inbox=inbox, allowed_origins="https://shop.example\nhttp://localhost:8001")
    _, token = actions.do_start_visitor_session(inbox=inbox, visitor_token=None,
                                                info=actions.SessionInfo(page_url="https://shop.example/"))
    return inbox, token


async def _widget(inbox, token, origin: str) -> bool | int:
    comm = WebsocketCommunicator(application, f"/ws/widget/{inbox.public_token}/?token={token}",
                                 headers=[(b"origin", origin.encode())])
    connected, code = await comm.connect(timeout=5)
    if connected:
        await comm.disconnect()
    return connected or code


async def test_widget_socket_compares_scheme_host_and_port(world, settings):
    settings.PUBLIC_BASE_URL = "https://support.example"
    inbox, token = await database_sync_to_async(_widget_token)()
    for origin in ("https://shop.example", "https://shop.example:443", "HTTPS://Shop.Example/",
                   "http://localhost:8001", "https://support.example:443"):
        assert await _widget(inbox, token, origin) is True, origin
    for origin in ("https://shop.example:8443", "http://shop.example", "http://localhost:8000", "http://localhost",
                   "https://support.example:8443", "", "null"):
        assert await _widget(inbox, token, origin) == 4403, origin


def test_widget_http_endpoints_compare_scheme_host_and_port(client, world):
    inbox, _ = _widget_token()
    url = f"/widget/api/{inbox.public_token}/session/"
    for origin, status in (("https://shop.example:443", 200), ("https://shop.example:8443", 403),
                           ("http://shop.example", 403), ("http://localhost:8001", 200), ("http://localhost:8000", 403)):
        r = client.post(url, "{}", content_type="text/plain", HTTP_ORIGIN=origin)
        assert r.status_code == status, (origin, r.status_code, r.content)
