"""Project middleware."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import psycopg
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpResponse, JsonResponse
from psycopg_pool import PoolTimeout

logger = logging.getLogger(__name__)


def reject_nul_bytes(get_response):
    """A NUL byte in the path or the query string is refused with 400 before any view runs: PostgreSQL text
    cannot hold one, so a lookup or filter with it would fail as a 500. (Form and API bodies are checked by
    their fields' own validators: Django's and DRF's CharField refuse NUL with a field error.)"""

    def middleware(request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            return JsonResponse({"error": "NUL characters are not allowed in the address."}, status=400)
        return get_response(request)

    return middleware


# The product's pages (the console, login, reports, the demo page, the browsable API): scripts only from files
# of our own origin (no inline script, no on*= handler, no eval), styles from our files plus inline style
# attributes (server-rendered colours such as segment badges, and the widget's shadow-root <style>), never framed.
_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
# The widget's own pages (/widget/popup/...): the same, except that agents' avatars may be on any host and a
# customer's site may frame the pop-up (it is exempt from X-Frame-Options too).
_WIDGET_POLICY = {**_POLICY, "img-src": "* data: blob:"}
del _WIDGET_POLICY["frame-ancestors"]
# Redoc (/api/v1/redoc/) runs its search in a worker it makes from a blob: URL.
_REDOC_POLICY = {**_POLICY, "worker-src": "'self' blob:"}
# The admin is not exempt: Django 5.2's admin has no inline script (our one handler, the widget snippet's
# select-all, is a static file), so it gets the product's policy.
_ADMIN_POLICY = _POLICY


def content_security_policy(get_response):
    """A Content-Security-Policy on every response that has none of its own (uploads keep their stricter
    ``default-src 'none'; sandbox``, omnichannel/files.py). See docs/security.md."""

    def middleware(request):
        response = get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = _policy_for(request)
        return response

    return middleware


def _policy_for(request) -> str:
    path = request.path_info
    if path.startswith("/widget/"):
        policy = _WIDGET_POLICY
    elif path.startswith("/admin/"):
        policy = _ADMIN_POLICY
    elif path.startswith("/api/v1/redoc/"):
        policy = _REDOC_POLICY
    else:
        policy = _POLICY
    connect = ["'self'", *_socket_origins(request)]
    return "; ".join(f"{name} {' '.join(connect) if name == 'connect-src' else value}"
                     for name, value in policy.items())


def _socket_origins(request) -> list[str]:
    """The origins scripts of our pages talk to besides 'self': PUBLIC_BASE_URL (the widget's script talks to it
    even on a page served under another name) and the websocket forms of both (older browsers do not count
    ws:// as 'self')."""
    base = urlsplit(settings.PUBLIC_BASE_URL)
    out = [f"{base.scheme}://{base.netloc}", f"{'wss' if base.scheme == 'https' else 'ws'}://{base.netloc}"]
    try:
        host = request.get_host()
    except DisallowedHost:
        return out
    own = f"{'wss' if request.is_secure() else 'ws'}://{host}"
    return out if own in out else [*out, own]


# Seconds a client is told to wait when the database is busy (every pooled connection taken).
BUSY_RETRY_AFTER_SECONDS = 5
BUSY_MESSAGE = "The service is busy. Try again in a few seconds."


def database_busy(exc: BaseException | None) -> bool:
    """Whether ``exc`` says that no database connection could be had: psycopg_pool's PoolTimeout (every pooled
    connection taken for DB_POOL_TIMEOUT seconds; Django re-raises it as its OperationalError), or PostgreSQL's
    "too many clients" when connecting without the pool. Any other database error is not: it stays a 500."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, PoolTimeout) or isinstance(exc, psycopg.errors.TooManyConnections):
            return True
        if isinstance(exc, psycopg.OperationalError) and "too many clients" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def busy_response(request) -> HttpResponse:
    """503 with Retry-After: JSON for the API and clients that ask for it, a short page otherwise."""
    if request.path_info.startswith("/api/") or "json" in request.headers.get("Accept", ""):
        response = JsonResponse({"detail": BUSY_MESSAGE}, status=503)
    else:
        response = HttpResponse(f'<!doctype html><html lang="en"><meta charset="utf-8"><title>Busy</title>'
                                f"<p>{BUSY_MESSAGE}</p></html>", status=503)
    response["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
    return response


class DatabaseBusyMiddleware:
    """A view (or its template) that cannot get a database connection answers 503 with Retry-After instead of
    a 500: the client may simply retry. Failures before the view (a middleware's query) reach the same answer
    through the project's handler500 (omnichannel/views.py)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if database_busy(exception):
            logger.warning("Database busy (%s): 503 for %s %s", exception, request.method, request.path)
            return busy_response(request)
        return None
