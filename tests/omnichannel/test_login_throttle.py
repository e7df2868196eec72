"""Issue 14: sign-in is throttled per user and per network address (django-axes).

25 wrong passwords in 12 s were all accepted attempts. Now, after LOGIN_FAILURE_LIMIT failures, the user (from
anywhere) and the address (for any user) are locked out for LOGIN_COOLOFF_MINUTES: the login page says so with
429. A successful sign-in resets the count; token-authenticated API calls never count.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

pytestmark = [pytest.mark.django_db]

def _limit() -> int:
    from django.conf import settings

    return getattr(settings, "LOGIN_FAILURE_LIMIT", 10)


LOCKED = "Too many failed sign-in attempts. Try again in 15 minutes."


def _login(client: Client, username: str, password: str, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password, "next": "/console/"},
                       **extra)


def test_wrong_passwords_lock_the_user_out_with_a_clear_message(settings, world):
    limit = _limit()
    client = Client()
    statuses = [_login(client, "alice", "wrong").status_code for _ in range(25)]
    assert statuses[:limit - 1] == [200] * (limit - 1)  # the form again, "didn't match"
    assert statuses[limit - 1:] == [429] * (25 - limit + 1)
    r = _login(client, "alice", "pw-alice")  # the right password is refused too while locked out
    assert r.status_code == 429
    body = r.content.decode()
    assert LOCKED in body and 'name="username"' in body  # the login page, with the message
    assert int(r["Retry-After"]) == 15 * 60
    # From another address too: the lock is on the user.
    assert _login(Client(REMOTE_ADDR="10.9.9.9"), "alice", "pw-alice").status_code == 429
    # Other users from other addresses sign in as usual.
    r = _login(Client(REMOTE_ADDR="10.9.9.9"), "bob", "pw-bob")
    assert r.status_code == 302 and r["Location"] == "/console/"


def test_the_lock_ends_after_the_cool_off(world):
    from axes.models import AccessAttempt
    client = Client()
    for _ in range(_limit()):
        _login(client, "alice", "wrong")
    assert _login(client, "alice", "pw-alice").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _login(client, "alice", "pw-alice").status_code == 302


def test_one_address_trying_many_users_is_locked_out(world):
    client = Client(REMOTE_ADDR="10.1.2.3")
    for i in range(_limit()):  # the failure that reaches the limit is answered with the lockout
        assert _login(client, f"nobody{i}", "wrong").status_code == (200 if i < _limit() - 1 else 429)
    assert _login(client, "bob", "pw-bob").status_code == 429  # the address is locked, whoever it names
    assert _login(Client(REMOTE_ADDR="10.1.2.4"), "bob", "pw-bob").status_code == 302


def test_a_successful_sign_in_resets_the_count(world):
    client = Client()
    for _round in range(3):
        for _ in range(_limit() - 1):
            assert _login(client, "alice", "wrong").status_code == 200
        assert _login(client, "alice", "pw-alice").status_code == 302
        client.post("/accounts/logout/")


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(settings, world):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxy = "10.0.0.2"  # every request reaches us from the proxy
    for i in range(_limit()):
        # The client writes its own first entry (a different one each time, to dodge the lock): ignored.
        _login(Client(REMOTE_ADDR=proxy), f"nobody{i}", "wrong", HTTP_X_FORWARDED_FOR=f"1.1.1.{i}, 81.2.69.142")
    r = _login(Client(REMOTE_ADDR=proxy), "bob", "pw-bob", HTTP_X_FORWARDED_FOR="7.7.7.7, 81.2.69.142")
    assert r.status_code == 429
    # Another client behind the same proxy is not locked out by the first one.
    r = _login(Client(REMOTE_ADDR=proxy), "bob", "pw-bob", HTTP_X_FORWARDED_FOR="81.2.69.143")
    assert r.status_code == 302


def test_admin_login_is_throttled_too(world):
    client = Client()
    for _ in range(_limit() - 1):
        assert client.post("/admin/login/", {"username": "bob", "password": "wrong"}).status_code == 200
    assert client.post("/admin/login/", {"username": "bob", "password": "wrong"}).status_code == 429
    r = client.post("/admin/login/", {"username": "bob", "password": "pw-bob"})
    assert r.status_code == 429 and LOCKED in r.content.decode()


def test_admin_login_and_token_auth_still_work(world):
    from agents.actions import do_create_api_token

    client = Client()
    r = client.post("/admin/login/?next=/admin/", {"username": "bob", "password": "pw-bob", "next": "/admin/"})
    assert r.status_code == 302 and r["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    _token, key = do_create_api_token(user=world.alice, name="tests")
    api = Client()
    for _ in range(30):  # many token-authenticated calls, and bad tokens, never lock anyone out
        assert api.get("/api/v1/conversations/", HTTP_AUTHORIZATION="Token nope").status_code == 401
    assert api.get("/api/v1/conversations/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert _login(Client(), "alice", "pw-alice").status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_lockout_under_asgi_is_the_same_page(world):
    """daphne runs the middleware chain asynchronously, where axes' middleware calls the lockout callable with
    other arguments: the answer is the same page."""
    from django.test import AsyncClient

    client = AsyncClient()
    for _ in range(_limit()):
        await client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    r = await client.post("/accounts/login/", {"username": "alice", "password": "pw-alice", "next": "/console/"})
    assert r.status_code == 429 and LOCKED in r.content.decode() and r["Retry-After"] == "900"


def test_authenticate_without_a_request_is_not_throttled(world):
    """The test client's login (and any script) calls authenticate() without a request: it still works."""
    assert Client().login(username="alice", password="pw-alice")
    assert not Client().login(username="alice", password="wrong")
