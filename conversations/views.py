"""The agent console: server-rendered pages and fragments, plus thin POST endpoints.

Every POST calls one action. Requests from the console's JS (``Accept: application/json``)
get JSON (``{"ok": true}`` or ``{"error": …}`` with a 4xx); plain form posts redirect back.
"""

from __future__ import annotations

import json
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_POST

from agents.actions import do_set_agent_status
from agents.models import AgentProfile, Team
from campaigns.actions import do_convert_to_ticket, do_end_chat, do_wrap_up
from omnichannel.errors import NotFound
from omnichannel.files import attachment_response
from omnichannel.integrations.twilio_sms import actions as sms_actions
from routing.actions import do_accept_offer
from sla.models import SlaClock

from . import actions, channels, console_html, selectors
from .canned import canned_for_user, render_canned
from .models import Attachment, Conversation, Inbox
from .panel import side_panel
from .selectors import InboxFilters

User = get_user_model()
PAGE_SIZE = 50


def agent_required(view):
    """Logged-in users with an agent profile (or superusers); others get 404 like missing objects."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        agent = selectors.get_agent(request.user)
        if agent is None:
            raise Http404("Not an agent")
        request.agent = agent
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(str(exc))

    return wrapper


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _done(request: HttpRequest, conversation_id: int | None = None, **data) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"ok": True, **data})
    if conversation_id:
        return redirect("console:conversation", conversation_id=conversation_id)
    return redirect("console:inbox")


def _error(request: HttpRequest, message: str, status: int = 400, conversation_id: int | None = None
           ) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"ok": False, "error": message}, status=status)
    messages.error(request, message)
    return _done(request, conversation_id)


MAX_PAGE = 10_000  # (page - 1) * PAGE_SIZE is an OFFSET: a bigint, and nobody pages past half a million rows


def _page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "")
    return min(max(int(raw), 1), MAX_PAGE) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else 1


def _visible_inboxes(request: HttpRequest) -> list[Inbox]:
    """The user's visible inboxes (id, name, kind), fetched once per request."""
    inboxes = getattr(request, "_visible_inboxes", None)
    if inboxes is None:
        inboxes = request._visible_inboxes = selectors.visible_inboxes(request.user)
    return inboxes


def _console_lists(request: HttpRequest, *, teams: bool = False) -> dict:
    """selectors.console_lists for the request's agent (the visible inboxes, the pick lists and the inbox
    streams' cursors, in one statement); the visible inboxes are kept on the request for the page."""
    out = selectors.console_lists(request.agent, teams=teams)
    request._visible_inboxes = out["inboxes"]
    return out


def _list_context(request: HttpRequest, filters: InboxFilters, inbox_ids: list[int], current_id=None) -> dict:
    page = _page_number(request)
    rows = selectors.conversation_rows(request.user, filters, inbox_ids=inbox_ids, offset=(page - 1) * PAGE_SIZE,
                                       limit=PAGE_SIZE + 1, search_window=page * PAGE_SIZE + 1)
    has_next = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filter_query = filters.as_query()
    return {
        "rows": rows, "page": page, "has_next": has_next,
        # A callable: the template renders the rows (in Python, see console_html) when it reaches them.
        "rows_html": lambda: console_html.render_rows(rows, filter_query, current_id),
    }


CONSOLE_VIEWS = [("mine", "Mine"), ("unassigned", "Unassigned"), ("teams", "My teams"), ("all", "All")]
FILTER_STATUSES = [("active", "Open, pending & on hold"), *Conversation.Status.choices, ("any", "Any status")]


def _console_context(request: HttpRequest, filters: InboxFilters, current_id=None, *, teams: bool = False,
                     lists: dict | None = None) -> dict:
    """`lists`: _console_lists(request, teams=teams) when the caller already has it."""
    lists = lists or _console_lists(request, teams=teams)
    inboxes = lists["inboxes"]
    sms_inboxes = [i for i in inboxes if channels.for_inbox(i).can(channels.PROACTIVE)]
    inbox_ids = sorted(i.id for i in inboxes)
    return {
        "filters": filters,
        "filter_query": filters.as_query(),
        "inboxes": inboxes,
        # The sidebar's views and pick lists (templates/console/_options.html).
        "console_views": CONSOLE_VIEWS,
        "filter_statuses": FILTER_STATUSES,
        "kind_choices": Inbox._meta.get_field("kind").choices,
        "priorities": Conversation.Priority.choices,
        "agent_statuses": AgentProfile.Status.choices,
        "sms_inboxes": sms_inboxes,
        "tags": lists["tags"], "segments": lists["segments"], "templates": lists["templates"],
        **({"teams": lists["teams"]} if teams else {}),
        "agent": request.agent,
        "cursors": lists["cursors"],
        "page_urls": console_html.page_urls(),
        **_list_context(request, filters, inbox_ids, current_id),
    }


@require_GET
@agent_required
def inbox(request: HttpRequest) -> HttpResponse:
    filters = InboxFilters.from_params(request.GET)
    context = {**_console_context(request, filters), "conversation": None,
               "config": _console_config(request, filters, None)}
    return render(request, "console/console.html", context)


@require_GET
@agent_required
def conversation_page(request: HttpRequest, conversation_id: int) -> HttpResponse:
    filters = InboxFilters.from_params(request.GET)
    lists = _console_lists(request, teams=True)
    conversation = selectors.access_conversation_by_id(request.user, conversation_id,
                                                       inbox_ids=[i.id for i in lists["inboxes"]],
                                                       related=PANEL_RELATED, base_related=PAGE_RELATED)
    context = _console_context(request, filters, conversation.id, teams=True, lists=lists)
    context.update(_conversation_context(request, conversation, extra=context))
    context["config"] = _console_config(request, filters, conversation)
    return render(request, "console/console.html", context)


def _console_config(request: HttpRequest, filters: InboxFilters, conversation: Conversation | None) -> dict:
    return {
        "conversationId": conversation.id if conversation else None,
        "contactId": conversation.contact_id if conversation else None,
        "channel": conversation.inbox.kind if conversation else None,
        "rowsUrl": reverse("console:rows"),
        "cannedUrl": reverse("console:canned"),
        "filterQuery": urlencode(filters.as_query()),
        "page": _page_number(request),
        "userId": request.user.pk,
        "serverNow": timezone.now().isoformat(),
    }


def _conversation_context(request: HttpRequest, conversation: Conversation, *, with_history: bool = True,
                          extra: dict | None = None) -> dict:
    """The conversation view's context; `extra`: what the caller already has (e.g. the teams list)."""
    extra = extra or {}
    contact = conversation.contact  # loaded with the conversation (access_conversation_by_id)
    inboxes = _visible_inboxes(request)
    history = selectors.get_contact_history(request.user, conversation, inboxes=inboxes) if with_history else []
    channel = channels.for_inbox(conversation.inbox)
    webchat = channel.can(channels.WIDGET)
    panel = side_panel(conversation, {i.id: i for i in inboxes}, webchat=webchat)
    other_conversations = panel.pop("other_conversations")
    events = selectors.conversation_events(conversation, limit=20)
    return {
        **panel,
        "conversation": conversation,
        "channel": channel,
        # Why no reply here can leave (shown next to the composer), or None.
        "send_problem": channel.transport(conversation.inbox).send_problem(conversation),
        "urls": console_html.conversation_urls(conversation.id),
        "contact": contact,
        "history": history,
        # A callable: rendered (in Python, see console_html) when the template reaches it.
        "history_html": lambda: console_html.render_messages(history, conversation),
        "has_earlier": bool(history) and len(history) >= selectors.HISTORY_PAGE,
        "other_conversations": other_conversations,
        **({} if "teams" in extra else {"teams": Team.objects.only("id", "name")}),
        "events": events,
        "sla_clocks": selectors.list_with_related(SlaClock, "conversation", conversation.id, ("policy",)),
        # The panel's status and priority controls. (Named apart from the sidebar's filters: the former shared
        # "statuses" name left the conversation page's status filter without "active" and "any".)
        "panel_statuses": Conversation.Status.choices,
        "priorities": Conversation.Priority.choices,
    }


# Not joined into the conversation's own query: each reverse one-to-one LEFT JOIN there cost PostgreSQL
# ~0.5-1 ms of planning (2.7 ms for these three), more than a query of their own.
PANEL_RELATED = ()
# The console page reads the conversation's inbox, contact and assignee, never its team (only team_id).
PAGE_RELATED = ("inbox", "contact", "assignee")


@require_GET
@agent_required
def assignees(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The assign and transfer controls' options, fetched when the agent opens them:
    {"assignee": "<option>…", "transfer": "<option>…"}, each agent with its status and live-chat load."""
    conversation = selectors.access_conversation_by_id(request.user, conversation_id)
    agents = list(selectors.list_assignable_agents_with_load(conversation))
    live = channels.for_inbox(conversation.inbox).live
    assignee, transfer = ['<option value="">Unassigned</option>'], ['<option value="">Unassigned</option>']
    for a in agents:
        name = escape(a.name)
        load = ""
        if live:
            load = f", {a.live_chats}/{a.max_concurrent} chats"
            if a.live_chats > a.max_concurrent:
                load += " — over limit"
        selected = " selected" if a.user_id == conversation.assignee_id else ""
        assignee.append(f'<option value="{a.user_id}"{selected}>{name} ({escape(a.get_status_display())}{load})'
                        "</option>")
        transfer.append(f'<option value="{a.user_id}">{name}</option>')
    return JsonResponse({"assignee": "".join(assignee), "transfer": "".join(transfer)})


@require_GET
@agent_required
def rows(request: HttpRequest) -> HttpResponse:
    """Re-render single inbox rows for the live list: {"rows": {id: html}}; ids missing no longer match."""
    filters = InboxFilters.from_params(request.GET)
    try:
        ids = [int(x) for x in request.GET.get("ids", "").split(",") if x][:100]
    except ValueError:
        return JsonResponse({"error": "ids must be numbers"}, status=400)
    found = selectors.get_conversation_rows(request.user, ids, filters)
    current = request.GET.get("current")
    filter_query = filters.as_query()
    return JsonResponse({
        "rows": {str(c.id): console_html.render_row(c, filter_query, current) for c in found},
        "order": [c.id for c in found],
    })


@require_GET
@agent_required
def messages_fragment(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.access_conversation_by_id(request.user, conversation_id,
                                                       inbox_ids=[i.id for i in _visible_inboxes(request)])
    after = request.GET.get("after")
    before = request.GET.get("before")
    try:
        history = selectors.get_contact_history(
            request.user, conversation, after_id=int(after) if after else None,
            before_id=int(before) if before else None, inboxes=_visible_inboxes(request))
    except ValueError:
        return HttpResponse("after/before must be message ids", status=400)
    return HttpResponse(console_html.render_messages(history, conversation))


@require_GET
@agent_required
def panel_fragment(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = selectors.access_conversation_by_id(request.user, conversation_id,
                                                       inbox_ids=[i.id for i in _visible_inboxes(request)],
                                                       related=PANEL_RELATED)
    return render(request, "console/_panel.html", _conversation_context(request, conversation, with_history=False))


def _conversation_for_post(request: HttpRequest, conversation_id: int) -> Conversation:
    return selectors.access_conversation_by_id(request.user, conversation_id)


def console_action(view):
    """POST-only console action: access check by the view, ActionError -> 400 with its message."""

    @require_POST
    @agent_required
    @wraps(view)
    def wrapper(request: HttpRequest, conversation_id: int, *args, **kwargs):
        conversation = _conversation_for_post(request, conversation_id)
        try:
            return view(request, conversation, *args, **kwargs)
        except actions.ActionError as exc:
            return _error(request, exc.message, conversation_id=conversation.id)

    return wrapper


@console_action
def reply(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    body = request.POST.get("body", "")
    files = request.FILES.getlist("files")
    if request.POST.get("mode") == "note":
        message = actions.do_add_note(actor=request.user, conversation=conversation, body=body, attachments=files)
    else:
        message = actions.do_send_agent_reply(actor=request.user, conversation=conversation, body=body,
                                              attachments=files)
    return _done(request, conversation.id, message_id=message.id)


def _id(raw: str) -> int | None:
    """A primary key typed in a form: ASCII digits that fit a bigint ("²" and "١" are digits to isdigit()), or
    None."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


@console_action
def assign(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    kwargs = {}
    if "assignee" in request.POST:
        raw = request.POST["assignee"]
        if raw == "me":
            kwargs["assignee"] = request.user
        elif raw:
            user = User.objects.filter(pk=_id(raw) or 0, is_active=True).first()
            if user is None:
                raise actions.ActionError("Unknown agent")
            kwargs["assignee"] = user
        else:
            kwargs["assignee"] = None
    if request.POST.get("team", "keep") != "keep":  # the transfer form's "Keep the team"
        raw = request.POST["team"]
        team = Team.objects.filter(pk=_id(raw)).first() if _id(raw) else None
        if raw and team is None:
            raise actions.ActionError("Unknown team")
        kwargs["team"] = team
    actions.do_assign_conversation(actor=request.user, conversation=conversation,
                                   note=request.POST.get("note", ""), **kwargs)
    return _done(request, conversation.id)


@console_action
def change_status(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    actions.do_change_status(actor=request.user, conversation=conversation, status=request.POST.get("status", ""))
    return _done(request, conversation.id)


@console_action
def change_priority(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    actions.do_change_priority(actor=request.user, conversation=conversation,
                               priority=request.POST.get("priority", ""))
    return _done(request, conversation.id)


@console_action
def change_subject(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    actions.do_change_subject(actor=request.user, conversation=conversation,
                              subject=request.POST.get("subject", ""))
    return _done(request, conversation.id)


@console_action
def set_tags(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    names = [n for n in request.POST.get("tags", "").split(",")]
    tags = actions.do_set_tags(actor=request.user, conversation=conversation, names=names)
    return _done(request, conversation.id, tags=tags)


@console_action
def merge(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    """Merge this conversation into another of the same contact."""
    try:
        target = selectors.access_conversation_by_id(request.user, request.POST.get("into", ""))
    except NotFound:
        raise actions.ActionError("Choose a conversation of this contact to merge into")
    actions.do_merge_conversations(actor=request.user, source=conversation, target=target)
    return _done(request, target.id, redirect=reverse("console:conversation", args=[target.id]))


@console_action
def merge_contact(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    """Merge another contact (by id) into this conversation's contact."""
    try:
        source = selectors.access_contact_by_id(request.user, request.POST.get("contact", ""))
    except NotFound:
        raise actions.ActionError("Unknown contact")
    actions.do_merge_contacts(actor=request.user, source=source, target=conversation.contact)
    return _done(request, conversation.id)


@console_action
def update_contact(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    contact = conversation.contact
    attrs_raw = request.POST.get("custom_attributes")
    attrs = None
    if attrs_raw is not None and attrs_raw.strip():
        try:
            attrs = json.loads(attrs_raw)
        except (ValueError, RecursionError):
            raise actions.ActionError("Attributes must be a JSON object", field="custom_attributes")
    try:
        with transaction.atomic():
            actions.do_update_contact(
                actor=request.user, contact=contact, name=request.POST.get("name"),
                email=request.POST.get("email"), phone=request.POST.get("phone"), custom_attributes=attrs)
            if "segments" in request.POST or request.POST.get("segments_present"):
                actions.do_set_contact_segments(actor=request.user, contact=contact,
                                                segment_ids=[_id(s) for s in request.POST.getlist("segments")
                                                             if _id(s)])
    except ValidationError as exc:
        raise actions.ActionError("; ".join(exc.messages))
    return _done(request, conversation.id)


@require_GET
@agent_required
def canned(request: HttpRequest) -> HttpResponse:
    """Canned messages for the composer, placeholders filled for the open conversation."""
    q = request.GET.get("q", "").lstrip("#").strip().lower()[:50]
    conversation = None
    if request.GET.get("conversation"):
        conversation = selectors.access_conversation_by_id(request.user, request.GET["conversation"])
    items = []
    seen = set()
    # Personal canned messages first, so a personal shortcut shadows the shared one.
    for cm in canned_for_user(request.user).order_by(F("owner_id").desc(nulls_last=True), "shortcut"):
        if cm.shortcut in seen or (q and q not in cm.shortcut.lower() and q not in cm.title.lower()):
            continue
        seen.add(cm.shortcut)
        items.append({
            "shortcut": cm.shortcut, "title": cm.title, "personal": cm.owner_id is not None,
            "body": render_canned(cm.body, contact=conversation.contact if conversation else None,
                                  agent_user=request.user, conversation=conversation),
        })
    items.sort(key=lambda i: (not i["shortcut"].startswith(q), i["shortcut"]))
    return JsonResponse({"items": items[:20]})


@require_POST
@agent_required
def set_presence(request: HttpRequest) -> HttpResponse:
    status = request.POST.get("status", "")
    if status not in AgentProfile.Status.values:
        return _error(request, "Status must be online, away or offline")
    if request.agent.pk:
        do_set_agent_status(agent=request.agent, status=status, reason="console")
    return _done(request)


@require_GET
@agent_required
def attachment(request: HttpRequest, attachment_id: int) -> HttpResponse:
    att = Attachment.objects.select_related("message").filter(pk=attachment_id).first()
    if att is None:
        raise Http404
    selectors.access_conversation_by_id(request.user, att.message.conversation_id)
    return attachment_response(att)


@console_action
def end_chat(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    actions.check_agent_can_write(request.user, conversation)
    do_end_chat(conversation=conversation, by="agent", actor=request.user)
    return _done(request, conversation.id)


@console_action
def follow_up(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    actions.check_agent_can_write(request.user, conversation)
    do_convert_to_ticket(actor=request.user, conversation=conversation)
    return _done(request, conversation.id)


@console_action
def wrap_up(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    actions.check_agent_can_write(request.user, conversation)
    do_wrap_up(actor=request.user, conversation=conversation, disposition=request.POST.get("disposition", ""),
               note=request.POST.get("note", ""))
    return _done(request, conversation.id)


@console_action
def accept_offer(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    do_accept_offer(user=request.user, conversation_id=conversation.id)
    return _done(request, conversation.id)


@require_POST
@agent_required
def new_sms(request: HttpRequest) -> HttpResponse:
    """Start an SMS conversation with an opted-in contact, optionally from a template."""
    try:
        inbox = selectors.access_inbox_by_id(request.user, request.POST.get("inbox", ""))
        raw_vars = request.POST.get("variables", "").strip()
        variables = json.loads(raw_vars) if raw_vars else {}
        if not isinstance(variables, dict):
            raise ValueError
        message = sms_actions.do_send_proactive_sms(
            actor=request.user, inbox=inbox, phone=request.POST.get("phone", ""), body=request.POST.get("body", ""),
            template=request.POST.get("template") or None, variables=variables)
    except NotFound:
        return _error(request, "Choose an SMS inbox")
    except (ValueError, RecursionError):
        return _error(request, 'Variables must be a JSON object, e.g. {"date": "Dec 3"}')
    except actions.ActionError as exc:
        return _error(request, exc.message)
    return _done(request, message.conversation_id,
                 redirect=reverse("console:conversation", args=[message.conversation_id]))
