"""The agent console: server-rendered pages and fragments, plus thin POST endpoints.

Every POST calls one action. Requests from the console's JS (``Accept: application/json``)
get JSON (``{"ok": true}`` or ``{"error": …}`` with a 4xx); plain form posts redirect back.
"""

from __future__ import annotations

import json
from functools import wraps
from types import SimpleNamespace
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db import connection, transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_POST

from agents.models import AgentProfile, Team
from omnichannel import realtime
from omnichannel.errors import NotFound
from omnichannel.files import attachment_response
from omnichannel.integrations.twilio_sms import actions as sms_actions
from omnichannel.models import RealtimeStream
from sla.models import SlaClock

from . import actions, channels, console_html, selectors
from .canned import canned_for_user, render_canned
from .models import (
    Attachment,
    ContactIdentity,
    ContactSegment,
    Conversation,
    Inbox,
    MessageTemplate,
    Segment,
    Tag,
)
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
    from django.contrib import messages

    messages.error(request, message)
    return _done(request, conversation_id)


def _page_number(request: HttpRequest) -> int:
    try:
        return max(int(request.GET.get("page", 1)), 1)
    except ValueError:
        return 1


def _visible_inboxes(request: HttpRequest) -> list[Inbox]:
    """The user's visible inboxes (id, name, kind), fetched once per request."""
    inboxes = getattr(request, "_visible_inboxes", None)
    if inboxes is None:
        inboxes = request._visible_inboxes = selectors.visible_inboxes(request.user)
    return inboxes


def _console_lists(request: HttpRequest, *, teams: bool = False) -> dict:
    """The console's visible inboxes, its small pick lists and the inbox streams' cursors, in one statement.

    Returns {"inboxes": [Inbox (id, name, kind)], "tags", "segments", "templates", "teams" (when asked):
    [{id, name}] in each model's order, "cursors": {stream: last seq}}. The visible inboxes are those of
    selectors.visible_inboxes (its own query as a subquery), and are kept on the request for the page.
    """
    agent = request.agent
    qn = connection.ops.quote_name
    inbox_table = qn(Inbox._meta.db_table)
    params: list = []
    if agent.sees_all_inboxes:
        visible = f"SELECT id, name, kind FROM {inbox_table}"
    else:
        # Inbox.objects.filter(teams__members=agent) (compiling that through the ORM cost ~0.8 ms of CPU)
        team_inboxes, agent_teams = Team.inboxes.through._meta, AgentProfile.teams.through._meta
        visible = (f"SELECT id, name, kind FROM {inbox_table} WHERE id IN ("
                   f"SELECT ti.{qn(team_inboxes.get_field('inbox').column)} FROM {qn(team_inboxes.db_table)} ti "
                   f"JOIN {qn(agent_teams.db_table)} at ON at.{qn(agent_teams.get_field('team').column)} = "
                   f"ti.{qn(team_inboxes.get_field('team').column)} "
                   f"WHERE at.{qn(agent_teams.get_field('agentprofile').column)} = %s)")
        params.append(agent.pk)
    parts = [
        ("tags", Tag, "name", 200),
        ("segments", Segment, "priority_level DESC, name", None),
        ("templates", MessageTemplate, "id", None),  # shown with the SMS inboxes only; a handful of rows
        *([("teams", Team, "name", None)] if teams else []),
    ]
    selects = ["SELECT 0 AS grp, row_number() OVER (ORDER BY name) AS pos, id, name, kind AS extra, "
               "CAST(NULL AS BIGINT) AS seq FROM vis"]
    for n, (_key, model, order, limit) in enumerate(parts, start=1):
        select = (f"SELECT {n} AS grp, row_number() OVER (ORDER BY {order}) AS pos, id, name, CAST(NULL AS TEXT), CAST(NULL AS BIGINT) "
                  f"FROM {qn(model._meta.db_table)}")
        if limit:
            select = f"SELECT * FROM ({select}) AS l{n} WHERE pos <= {int(limit)}"
        selects.append(select)
    # Cursors of the visible inboxes' streams (realtime.inbox_stream names them "inbox.<id>").
    selects.append(f"SELECT {len(parts) + 1}, 0, vis.id, NULL, NULL, s.last_seq FROM vis "
                   f"JOIN {qn(RealtimeStream._meta.db_table)} s ON s.name = 'inbox.' || vis.id")
    out: dict = {"inboxes": [], **{key: [] for key, *_ in parts}}
    seqs: dict[int, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(f"WITH vis AS ({visible}) " + " UNION ALL ".join(selects) + " ORDER BY grp, pos", params)
        for grp, _pos, pk, name, extra, seq in cursor.fetchall():
            if grp == 0:
                out["inboxes"].append(Inbox(id=pk, name=name, kind=extra))
            elif grp <= len(parts):
                out[parts[grp - 1][0]].append(SimpleNamespace(id=pk, name=name))
            else:
                seqs[pk] = seq
    out["cursors"] = {realtime.inbox_stream(pk): seqs.get(pk, 0) for pk in sorted(i.id for i in out["inboxes"])}
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
    tag_names = [t.name for t in lists["tags"]]
    return {
        "filters": filters,
        "filter_query": filters.as_query(),
        "inboxes": inboxes,
        # The sidebar's pick lists as <option>s (console_html escapes every value and label).
        "view_links": console_html.view_links(CONSOLE_VIEWS, filters),
        "status_options": console_html.options(FILTER_STATUSES, filters.status),
        "kind_options": console_html.options(Inbox._meta.get_field("kind").choices, filters.kind),
        "inbox_options": console_html.options([(i.id, i.name) for i in inboxes], filters.inbox),
        "priority_options": console_html.options(Conversation.Priority.choices, filters.priority),
        "tag_options": console_html.name_options(tag_names, filters.tag),
        "tag_datalist": console_html.datalist_options(tag_names),
        "segment_options": console_html.options([(s.id, s.name) for s in lists["segments"]], filters.segment),
        "agent_status_options": console_html.options(AgentProfile.Status.choices, request.agent.status),
        "sms_inboxes": sms_inboxes,
        "tags": lists["tags"], "segments": lists["segments"], "templates": lists["templates"],
        **({"teams": lists["teams"]} if teams else {}),
        "agent": request.agent,
        "cursors": lists["cursors"],
        "page_urls": console_html.page_urls(),
        "csrf_input": console_html.csrf_input(request),
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
    panel = _panel_data(conversation, {i.id: i for i in inboxes}, webchat=webchat)
    other_conversations = panel.pop("other_conversations")
    if webchat:
        panel.update(is_webchat=True, chat_count=_chat_count(conversation, other_conversations))
    events = selectors.conversation_events(conversation, limit=20)
    return {
        **panel,
        "conversation": conversation,
        "channel": channel,
        "channel_icon": console_html.channel_icon(conversation.inbox.kind, channel.label),
        "urls": console_html.conversation_urls(conversation.id),
        "csrf_input": extra.get("csrf_input") or console_html.csrf_input(request),
        "contact": contact,
        "history": history,
        # A callable: rendered (in Python, see console_html) when the template reaches it.
        "history_html": lambda: console_html.render_messages(history, conversation),
        "has_earlier": bool(history) and len(history) >= selectors.HISTORY_PAGE,
        "other_conversations": other_conversations,
        **({} if "teams" in extra else {"teams": Team.objects.only("id", "name")}),
        "events": events,
        # Callables: rendered (in Python, see console_html) when the template reaches them.
        "events_html": lambda: console_html.render_events(events),
        "other_conversations_html": lambda: console_html.render_contact_conversations(other_conversations,
                                                                                      conversation),
        "merge_options_html": lambda: console_html.render_merge_options(other_conversations, conversation),
        "sla_clocks": selectors.list_with_related(SlaClock, "conversation", conversation.id, ("policy",)),
        # The panel's status and priority controls. (Named apart from the sidebar's filters: the former shared
        # "statuses" name left the conversation page's status filter without "active" and "any".)
        "panel_status_options": console_html.options(Conversation.Status.choices, conversation.status),
        "panel_priority_options": console_html.options(Conversation.Priority.choices, conversation.priority),
    }


def _chat_count(conversation: Conversation, other_conversations: list[Conversation]) -> int:
    """The contact's conversations in this inbox: counted in the panel's list of the contact's conversations in
    the visible inboxes (this inbox is one) unless that list was cut at its limit."""
    if len(other_conversations) < selectors.CONTACT_CONVERSATIONS_LIMIT:
        return sum(1 for c in other_conversations if c.inbox_id == conversation.inbox_id)
    return Conversation.objects.filter(inbox_id=conversation.inbox_id, contact_id=conversation.contact_id).count()


IDENTITY_KINDS = dict(ContactIdentity.Kind.choices)

# Not joined into the conversation's own query: each reverse one-to-one LEFT JOIN there cost PostgreSQL
# ~0.5-1 ms of planning (2.7 ms for these three), more than a query of their own.
PANEL_RELATED = ()
# The console page reads the conversation's inbox, contact and assignee, never its team (only team_id).
PAGE_RELATED = ("inbox", "contact", "assignee")


def _panel_data(conversation: Conversation, inboxes: dict[int, Inbox], *, webchat: bool) -> dict:
    """The side panel's small reads in one statement (UNION ALL of text columns, one group per read):

    the contact's identities and segments, the conversation's tag names, the assignee's display name, the
    latest routing decision, the pending offer, the contact's conversations in the visible `inboxes` (newest
    first, at most selectors.CONTACT_CONVERSATIONS_LIMIT), and for web chats the wrap-up, the survey, the
    visitor's latest session and the widget's dispositions. Each group selects what the ORM reads did.
    """
    from campaigns.models import ChatSurvey, VisitorSession, WidgetConfig, WrapUp
    from routing.models import QueueEntry, RoutingDecision

    t = {name: connection.ops.quote_name(model._meta.db_table) for name, model in (
        ("identity", ContactIdentity), ("member", ContactSegment), ("segment", Segment),
        ("conv_tag", Conversation.tags.through), ("tag", Tag), ("agent", AgentProfile), ("user", User),
        ("decision", RoutingDecision), ("queue", QueueEntry), ("conversation", Conversation),
        ("wrap_up", WrapUp), ("survey", ChatSurvey), ("visitor", VisitorSession), ("widget", WidgetConfig))}
    cid, contact_id, inbox_ids = conversation.id, conversation.contact_id, sorted(inboxes)
    n = "CAST(NULL AS TEXT)"
    groups = [
        (f"SELECT 0 AS k, row_number() OVER (ORDER BY i.id) AS pos, i.kind AS a, i.value AS b, {n} AS c, {n} AS d, "
         f"{n} AS e FROM {t['identity']} i WHERE i.contact_id = %s", [contact_id]),
        (f"SELECT 1, row_number() OVER (ORDER BY s.priority_level DESC, s.name), s.name, s.label, s.color, {n}, {n} "
         f"FROM {t['member']} m JOIN {t['segment']} s ON s.id = m.segment_id WHERE m.contact_id = %s", [contact_id]),
        (f"SELECT 2, row_number() OVER (ORDER BY tg.name), tg.name, {n}, {n}, {n}, {n} FROM {t['conv_tag']} ct "
         f"JOIN {t['tag']} tg ON tg.id = ct.tag_id WHERE ct.conversation_id = %s", [cid]),
        (f"SELECT * FROM (SELECT 3, 0, r.summary, CAST(r.details AS TEXT), {n}, {n}, {n} FROM {t['decision']} r "
         f"WHERE r.conversation_id = %s ORDER BY r.id DESC LIMIT 1) AS g3", [cid]),
        (f"SELECT 4, 0, a.display_name, u.first_name, u.last_name, u.username, CAST(a.user_id AS TEXT) "
         f"FROM {t['queue']} q LEFT JOIN {t['agent']} a ON a.id = q.offered_to_id "
         f"LEFT JOIN {t['user']} u ON u.id = a.user_id WHERE q.conversation_id = %s AND q.state = 'offered'", [cid]),
    ]
    if inbox_ids:
        groups.append((
            f"SELECT * FROM (SELECT 5, row_number() OVER (ORDER BY c.id DESC), CAST(c.id AS TEXT), c.status, "
            f"CAST(c.merged_into_id AS TEXT), CAST(c.inbox_id AS TEXT), {n} FROM {t['conversation']} c "
            f"WHERE c.contact_id = %s AND c.inbox_id IN ({', '.join(['%s'] * len(inbox_ids))}) "
            f"ORDER BY c.id DESC LIMIT {int(selectors.CONTACT_CONVERSATIONS_LIMIT)}) AS g5",
            [contact_id, *inbox_ids]))
    if conversation.assignee_id is not None:
        groups.append((f"SELECT 6, 0, a.display_name, {n}, {n}, {n}, {n} FROM {t['agent']} a WHERE a.user_id = %s",
                       [conversation.assignee_id]))
    if webchat:
        groups += [
            (f"SELECT 7, 0, w.disposition, w.note, {n}, {n}, {n} FROM {t['wrap_up']} w WHERE w.conversation_id = %s",
             [cid]),
            (f"SELECT 8, 0, CAST(v.rating AS TEXT), v.comment, {n}, {n}, {n} FROM {t['survey']} v "
             f"WHERE v.conversation_id = %s", [cid]),
            (f"SELECT * FROM (SELECT 9, 0, v.page_url, v.page_title, CAST(v.visits AS TEXT), {n}, {n} "
             f"FROM {t['visitor']} v WHERE v.inbox_id = %s AND v.contact_id = %s ORDER BY v.last_seen_at DESC "
             f"LIMIT 1) AS g9", [conversation.inbox_id, contact_id]),
            (f"SELECT 10, 0, CAST(wc.dispositions AS TEXT), {n}, {n}, {n}, {n} FROM {t['widget']} wc "
             f"WHERE wc.inbox_id = %s", [conversation.inbox_id]),
        ]
    out: dict = {"contact_identities": [], "contact_segments": [], "conversation_tags": [], "routing": None,
                 "offer": None, "other_conversations": [], "assignee_name": ""}
    if webchat:
        out.update(wrap_up=None, survey=None, visitor=None)
    display_name = dispositions = None
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(sql for sql, _ in groups) + " ORDER BY k, pos",
                       [p for _, params in groups for p in params])
        rows = cursor.fetchall()
    for k, _pos, a, b, c, d, e in rows:
        if k == 0:
            out["contact_identities"].append(SimpleNamespace(kind=a, kind_label=IDENTITY_KINDS.get(a, a), value=b))
        elif k == 1:
            out["contact_segments"].append(SimpleNamespace(name=a, color=c, label=b or a))  # str(Segment)
        elif k == 2:
            out["conversation_tags"].append(a)
        elif k == 3:
            out["routing"] = SimpleNamespace(summary=a, details=json.loads(b) if b else {})
        elif k == 4:
            # AgentProfile.name: display name, full name or username ("" when the offer has no agent).
            name = (a or f"{b} {c}".strip() or d) if d is not None else ""
            out["offer"] = SimpleNamespace(offered_to=SimpleNamespace(name=name, user_id=int(e) if e else None))
        elif k == 5:
            inbox_id = int(d)
            out["other_conversations"].append(SimpleNamespace(
                id=int(a), status=b, merged_into_id=int(c) if c else None, inbox_id=inbox_id,
                contact_id=contact_id, inbox=inboxes[inbox_id]))
        elif k == 6:
            display_name = a
        elif k == 7:
            out["wrap_up"] = SimpleNamespace(disposition=a, note=b)
        elif k == 8:
            out["survey"] = SimpleNamespace(rating=int(a), comment=b)
        elif k == 9:
            out["visitor"] = SimpleNamespace(page_url=a, page_title=b, visits=int(c))
        elif k == 10:
            dispositions = json.loads(a) if a else []
    if conversation.assignee_id is not None:
        user = conversation.assignee  # loaded with the conversation (access_conversation_by_id)
        out["assignee_name"] = display_name or user.get_full_name() or user.get_username()
    if webchat:
        if dispositions is None:  # no widget configuration yet: get_config creates it, as before
            from campaigns.actions import get_config

            out["dispositions"] = get_config(conversation.inbox).disposition_choices
        else:
            from campaigns.models import DEFAULT_DISPOSITIONS

            out["dispositions"] = dispositions or DEFAULT_DISPOSITIONS
    return out


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
    from django.core.exceptions import ValidationError

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
    from agents.actions import do_set_agent_status

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
    from campaigns.actions import do_end_chat

    actions.check_agent_can_write(request.user, conversation)
    do_end_chat(conversation=conversation, by="agent", actor=request.user)
    return _done(request, conversation.id)


@console_action
def follow_up(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    from campaigns.actions import do_convert_to_ticket

    actions.check_agent_can_write(request.user, conversation)
    do_convert_to_ticket(actor=request.user, conversation=conversation)
    return _done(request, conversation.id)


@console_action
def wrap_up(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    from campaigns.actions import do_wrap_up

    actions.check_agent_can_write(request.user, conversation)
    do_wrap_up(actor=request.user, conversation=conversation, disposition=request.POST.get("disposition", ""),
               note=request.POST.get("note", ""))
    return _done(request, conversation.id)


@console_action
def accept_offer(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    from routing.actions import do_accept_offer

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
