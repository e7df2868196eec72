"""Sign-in throttling (django-axes, configured in settings): who is asking, what a locked-out client is told,
and what a successful sign-in forgets.

After ``LOGIN_FAILURE_LIMIT`` failed sign-ins within ``LOGIN_COOLOFF_MINUTES``, the user name (from any
address) and the network address (for any user name) are locked out until the oldest failure is that old.
It applies to every ``authenticate()`` with a request: the console's login page and the admin's. Token and
session authentication of the REST API never count.
"""

from __future__ import annotations

import ipaddress

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_ip(request: HttpRequest) -> str | None:
    """The client's address. Behind our proxy (``BEHIND_PROXY``) the last X-Forwarded-For entry, the one our
    proxy appended: the earlier entries are whatever the client sent (daphne's ``--proxy-headers`` takes the
    first one, which a client can forge). Anything that is not an IP address falls back to REMOTE_ADDR."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if _is_ip(forwarded):
            return forwarded
    remote = request.META.get("REMOTE_ADDR") or ""
    return remote if _is_ip(remote) else None


USERNAME_MAX = 150  # Django's username length; axes stores the name in a varchar(255)


def client_username(request: HttpRequest, credentials: dict | None = None) -> str:
    """The user name a sign-in attempt names, as axes records it: from the credentials, else the posted form,
    without NUL and at most USERNAME_MAX characters (a longer one is no user's name, and would not fit)."""
    value = (credentials or {}).get("username")
    if value is None and request is not None:
        value = request.POST.get("username", "")
    return str(value or "").replace("\x00", "")[:USERNAME_MAX]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def lockout_message() -> str:
    minutes = settings.LOGIN_COOLOFF_MINUTES
    return f"Too many failed sign-in attempts. Try again in {minutes} minute{'' if minutes == 1 else 's'}."


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """The login page with the lockout message, 429 with Retry-After (axes' AXES_LOCKOUT_CALLABLE; its async
    middleware passes the credentials second, so neither argument is used)."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    response = render(request, "registration/login.html", {"locked_out": lockout_message(), "next": next_url},
                      status=429)
    response["Retry-After"] = str(settings.LOGIN_COOLOFF_MINUTES * 60)
    return response


class LoginAttempts(AxesDatabaseHandler):
    """Axes' database handler; a successful sign-in forgets that user name's failures (from every address),
    and only those: axes' own reset also forgets every failure from the address, so one valid account of
    an attacker's own would reset the count of the user names they are guessing from there."""

    def user_logged_in(self, sender, request, user, **kwargs):
        super().user_logged_in(sender, request, user, **kwargs)
        AccessAttempt.objects.filter(username=user.get_username()).delete()


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' backend (first in AUTHENTICATION_BACKENDS: a locked-out sign-in is refused before any password is
    checked). Every sign-in over the web passes its request; a call without one (Django's test ``Client.login``,
    a script) has no address to count and is not throttled, where axes' own backend raised."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
