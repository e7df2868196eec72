"""Health check and the demo website page (a fake shop with a contact box on the API channel)."""

from __future__ import annotations

import re
import sys

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.http import require_http_methods

from conversations.actions import do_receive_inbound_message
from conversations.models import ChannelKind, ContactIdentity, Inbox, Message
from omnichannel import queries
from omnichannel.errors import ActionError
from omnichannel.middleware import busy_response, database_busy

VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an unhandled error outside a view (a middleware's query) that is the database being busy (the
    pool exhausted) is 503 with Retry-After, like DatabaseBusyMiddleware answers for views; anything else is
    Django's 500 page. Django calls this while handling the exception, so sys.exc_info() is it."""
    if database_busy(sys.exc_info()[1]):
        return busy_response(request)
    return defaults.server_error(request)


def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute(queries.HEALTH_CHECK_SQL)
    return HttpResponse("ok", content_type="text/plain")


def _demo_inbox() -> Inbox:
    if not settings.DEMO_MODE:
        raise Http404
    inbox = Inbox.objects.filter(kind=ChannelKind.API, settings__demo=True).first()
    if inbox is None:
        raise Http404
    return inbox


def demo_page(request: HttpRequest) -> HttpResponse:
    _demo_inbox()
    return render(request, "demo/shop.html")


@require_http_methods(["GET", "POST"])
def demo_messages(request: HttpRequest) -> HttpResponse:
    """The demo shop's contact box: post a customer message / read the public replies.

    Until the widget (issue #3) lands, this stands in for a website's chat entry point;
    messages go through the same inbound action as every channel. DEMO_MODE only.
    """
    inbox = _demo_inbox()
    visitor = request.POST.get("visitor") if request.method == "POST" else request.GET.get("visitor")
    if not visitor or not VISITOR_ID.match(visitor):
        return JsonResponse({"error": "visitor must be 16-64 url-safe characters"}, status=400)
    if request.method == "POST":
        try:
            do_receive_inbound_message(inbox=inbox, source_id=f"demo-{visitor}", body=request.POST.get("body", ""),
                                       contact_name=request.POST.get("name", "")[:100])
        except ActionError as exc:
            return JsonResponse({"error": exc.message}, status=400)
    identity = ContactIdentity.objects.filter(kind="api", scope=str(inbox.pk), value=f"demo-{visitor}").first()
    messages = []
    if identity:
        qs = Message.objects.filter(conversation__contact_id=identity.contact_id, inbox=inbox,
                                    kind=Message.Kind.MESSAGE).order_by("id")[:200]
        messages = [{"id": m.id, "from": "you" if m.direction == "in" else "agent", "body": m.body} for m in qs]
    return JsonResponse({"messages": messages})
