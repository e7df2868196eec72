"""Data for bench_widget: one web-chat inbox, N visitor sessions with an open chat each, one supervisor.

Run by bench/bench_widget.py in a subprocess whose environment points at the widget bench database
(``omnichannel_bench_ws``), so it never touches the console benchmark's data:

    python -m bench.widget_setup --visitors 1000 --out setup.json

Idempotent: the inbox, the supervisor and the visitors made by an earlier run are reused and only
the missing visitors are added. Every visitor already has an open conversation (one warm-up message),
so the measured messages take the steady-state path of a chat in progress, not conversation creation.
Prints/writes JSON: inbox id and public token, the allowed Origin, the visitor tokens, the console's
session cookie.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.harness import setup_django

INBOX_NAME = "bench-ws widget"
ORIGIN = "https://shop.example"  # what the visitors' browsers send; only a header, nothing is contacted
SUPERVISOR = "bench-ws-supervisor"


def setup(visitors: int) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from agents.actions import do_set_agent_role
    from agents.models import AgentProfile
    from campaigns import actions
    from campaigns.models import VisitorSession, WidgetConfig
    from conversations.models import ChannelKind, Conversation, Inbox

    if "bench" not in settings.DATABASES["default"]["NAME"]:
        raise SystemExit("refusing to write bench data into a database whose name lacks 'bench'")
    inbox = Inbox.objects.filter(name=INBOX_NAME, kind=ChannelKind.WEBCHAT).first()
    if inbox is None:
        inbox = Inbox.objects.create(name=INBOX_NAME, kind=ChannelKind.WEBCHAT)
    WidgetConfig.objects.update_or_create(inbox=inbox, defaults={
        "allowed_origins": ORIGIN + "\n", "messages_per_minute": 10000, "prechat_enabled": False})

    User = get_user_model()
    user = User.objects.filter(username=SUPERVISOR).first()
    if user is None:
        user = User.objects.create_user(username=SUPERVISOR, password=None, first_name="Bench")
    agent, _ = AgentProfile.objects.get_or_create(user=user, defaults={"display_name": "Bench supervisor"})
    AgentProfile.objects.filter(pk=agent.pk).update(max_concurrent=10000)
    do_set_agent_role(agent=agent, role=AgentProfile.Role.SUPERVISOR)

    have = VisitorSession.objects.filter(inbox=inbox).count()
    for i in range(have, visitors):
        actions.do_start_visitor_session(inbox=inbox, visitor_token=None, info=actions.SessionInfo(
            page_url="https://shop.example/pricing", page_title="Pricing", user_agent="bench_widget",
            language="en", ip="127.0.0.1"))
        if i % 200 == 199:
            print(f"   {i + 1} visitors", file=sys.stderr, flush=True)
    sessions = list(VisitorSession.objects.filter(inbox=inbox).select_related("inbox", "contact")
                    .order_by("id")[:visitors])
    open_contacts = set(Conversation.objects.filter(inbox=inbox, status__in=Conversation.ACTIVE_STATUSES,
                                                    merged_into__isnull=True).values_list("contact_id", flat=True))
    for session in sessions:
        if session.contact_id not in open_contacts:
            actions.do_visitor_message(session=session, body="hello (bench warm-up)", client_id=None)

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM conversations_message WHERE inbox_id = %s", [inbox.id])
        (messages,) = cursor.fetchone()
    return {
        "inbox_id": inbox.id,
        "public_token": inbox.public_token,
        "origin": ORIGIN,
        "visitor_tokens": [actions.sign_visitor(inbox, s.visitor_id) for s in sessions],
        "session_cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}",
        "messages_in_inbox": messages,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, required=True)
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    setup_django()
    Path(options.out).write_text(json.dumps(setup(options.visitors)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
