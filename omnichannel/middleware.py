"""Project middleware."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import JsonResponse


def reject_nul_bytes(get_response):
    """A NUL byte in the path or the query string is refused with 400 before any view runs: PostgreSQL text
    cannot hold one, so a lookup or filter with it would fail as a 500. (Form and API bodies are checked by
    their fields' own validators: Django's and DRF's CharField refuse NUL with a field error.)"""

    def middleware(request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            return JsonResponse({"detail": "NUL characters are not allowed in the address."}, status=400)
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
