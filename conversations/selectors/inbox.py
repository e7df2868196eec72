"""The console's inbox list: InboxFilters (the list's query string), the visible conversations they select,
the page's rows in one statement compiled once (ConversationRow; its wrapper: queries.wrap_rows_sql) and the
console's pick lists with the inboxes' cursors (console_lists; queries.console_lists_sql)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.core.exceptions import EmptyResultSet
from django.db import connection, connections
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.query import ValuesIterable

from agents.models import AgentProfile, Team
from omnichannel import realtime

from .. import queries
from ..models import Conversation, Inbox, Message
from .access import get_agent, visible_inbox_ids

# --- The inbox list -----------------------------------------------------------------

VIEWS = ("mine", "unassigned", "teams", "all")


@dataclass
class InboxFilters:
    view: str = "all"
    status: str = "open"  # a status, or "active" (open+pending+on hold), or "any"
    inbox: int | None = None
    kind: str = ""
    priority: int | None = None
    tag: str = ""
    segment: int | None = None
    q: str = ""
    sort: str = "waiting"  # or "sla": most urgent SLA first
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params) -> InboxFilters:
        f = cls()
        f.view = params.get("view") or "all"
        if f.view not in VIEWS:
            f.errors.append(f"Unknown view {f.view!r}")
            f.view = "all"
        f.status = params.get("status") or "open"
        if f.status not in {*Conversation.Status.values, "active", "any"}:
            f.errors.append(f"Unknown status {f.status!r}")
            f.status = "open"
        for name in ("inbox", "priority", "segment"):
            raw = params.get(name)
            if raw not in (None, ""):
                try:
                    setattr(f, name, int(raw))
                except ValueError:
                    f.errors.append(f"{name} must be a number")
        f.kind = params.get("kind") or ""
        f.tag = (params.get("tag") or "")[:64]
        f.q = (params.get("q") or "").strip()[:200]
        f.sort = params.get("sort") or "waiting"
        if f.sort not in ("waiting", "sla"):
            f.errors.append(f"Unknown sort {f.sort!r}")
            f.sort = "waiting"
        return f

    def as_query(self) -> dict[str, str]:
        out = {"view": self.view, "status": self.status}
        for name in ("inbox", "priority", "segment"):
            if getattr(self, name) is not None:
                out[name] = str(getattr(self, name))
        if self.sort != "waiting":
            out["sort"] = self.sort
        for name in ("kind", "tag", "q"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out


def _message_search(q: str) -> QuerySet[Message]:
    # Matches the expression index message_body_fts (see migration 0002).
    return Message.objects.annotate(fts=SearchVector("body", config="simple")).filter(
        fts=SearchQuery(q, config="simple", search_type="websearch")
    )


def filter_conversations_for_agent(user: AbstractBaseUser, filters: InboxFilters, *,
                                   inbox_ids: list[int] | None = None,
                                   search_window: int | None = None) -> QuerySet[Conversation]:
    """Visible conversations matching `filters`, longest waiting first (no related data loaded).

    `inbox_ids`: the user's visible inboxes when the caller already has them (one query saved).
    `search_window`: with a search, the caller reads at most this many rows from the start (a page's end);
    the search is then planned as two bounded lookups (see _search).
    """
    agent = get_agent(user)
    qs = Conversation.objects.filter(merged_into__isnull=True)
    if agent is None:
        return qs.none()
    if inbox_ids is None and not agent.sees_all_inboxes:
        inbox_ids = visible_inbox_ids(user)
    if inbox_ids is not None and not agent.sees_all_inboxes:
        # An explicit id list (not a subquery): the planner uses conv_inbox_status_wait per inbox.
        qs = qs.filter(inbox_id__in=inbox_ids)
    # Supervisors and admins see every inbox: no inbox condition at all (conv_status_wait serves the order).
    if filters.view == "mine":
        qs = qs.filter(assignee=user)
    elif filters.view == "unassigned":
        qs = qs.filter(assignee__isnull=True)
    elif filters.view == "teams":
        # Given to one of my teams, or to no team yet in an inbox one of my teams works (routing's default
        # target: the inbox's teams).
        my_teams = Team.objects.filter(members__user=user).values("pk")
        my_inboxes = Team.inboxes.through.objects.filter(team__members__user=user).values("inbox_id")
        qs = qs.filter(Q(team_id__in=my_teams) | Q(team__isnull=True, inbox_id__in=my_inboxes))
    if filters.status == "active":
        qs = qs.filter(status__in=Conversation.ACTIVE_STATUSES)
    elif filters.status != "any":
        qs = qs.filter(status=filters.status)
    if filters.inbox is not None:
        qs = qs.filter(inbox_id=filters.inbox)
    if filters.kind:
        qs = qs.filter(inbox__kind=filters.kind)
    if filters.priority is not None:
        qs = qs.filter(priority=filters.priority)
    if filters.tag:
        qs = qs.filter(tags__name=filters.tag)
    if filters.segment is not None:
        qs = qs.filter(contact__segments__id=filters.segment)
    if filters.sort == "sla":
        order = (F("sla_due_at").asc(nulls_last=True), F("waiting_since").asc(nulls_last=True), "-id")
    else:
        order = (F("waiting_since").asc(nulls_last=True), "-last_message_at", "-id")
    if filters.q:
        qs = _search(qs, filters.q, order, search_window)
    return qs.order_by(*order)


def _search(qs: QuerySet[Conversation], q: str, order: tuple, window: int | None) -> QuerySet[Conversation]:
    """Conversations with a message matching `q` (full text) or whose subject contains it.

    ``EXISTS(message) OR subject ILIKE`` cannot become a join, so PostgreSQL hashes every matching message
    of the whole table first (54,000 rows for a common word: ~250 ms). With a `window`, each condition is
    its own bounded, ordered subquery instead: the message one is a plain semi-join, which the planner runs
    from the conversation index in list order, probing each conversation's messages, when the word is
    common, or from the GIN index when it is rare (it estimates from the index's statistics); the first
    `window` rows of the union of the two are exactly the first `window` rows of the OR. Those ids (at most
    2 x `window`) are read here, in one statement, and the list is then filtered by primary key.
    """
    matching = _message_search(q).filter(conversation_id=OuterRef("pk"))
    if window is None:
        return qs.filter(Q(Exists(matching)) | Q(subject__icontains=q))
    by_message = qs.filter(Exists(matching)).order_by(*order).values_list("id", flat=True)[:window]
    by_subject = qs.filter(subject__icontains=q).order_by(*order).values_list("id", flat=True)[:window]
    if connection.features.supports_slicing_ordering_in_compound:
        ids = set(by_message.union(by_subject))
    else:
        ids = {*by_message, *by_subject}
    return qs.filter(id__in=sorted(ids))


def list_conversations_for_agent(user: AbstractBaseUser, filters: InboxFilters, *,
                                 inbox_ids: list[int] | None = None,
                                 search_window: int | None = None) -> QuerySet[ConversationRow]:
    """The console inbox list: visible conversations, filtered, longest waiting first, as ConversationRow.

    Two statements when evaluated (plus the visible inboxes for agents unless `inbox_ids` is given): the
    rows' columns with inbox, contact and assignee names (joins), then the page's tag names and contacts'
    segments in one statement. Callers slice it to a page (and may .filter() it further).
    """
    qs = filter_conversations_for_agent(user, filters, inbox_ids=inbox_ids, search_window=search_window)
    qs = qs.values(*ROW_VALUES)
    qs._iterable_class = _RowIterable
    return qs


ROW_VALUES = ("id", "status", "priority", "subject", "last_message_preview", "waiting_since", "sla_due_at",
              "sla_warn_at", "sla_metric", "sla_paused", "inbox_id", "contact_id", "assignee_id",
              "inbox__name", "inbox__kind", "contact__name", "contact__email", "contact__phone")


class ConversationRow:
    """One row of the inbox list: what conversations/console_html.py shows (not a model instance)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)
        self.inbox_name, self.inbox_kind = values["inbox__name"], values["inbox__kind"]
        # Contact.display_name
        self.contact_display_name = (values["contact__name"] or values["contact__email"] or values["contact__phone"]
                                     or f"Contact #{values['contact_id']}")
        self.assignee_name = ""  # set with the tags (queries.wrap_rows_sql)
        self.tag_names: list[str] = []
        self.segment: tuple[str, str] | None = None  # (colour, label) of the contact's top segment

    def __repr__(self) -> str:
        return f"<ConversationRow #{self.id}>"


class _RowIterable(ValuesIterable):
    """ValuesIterable that yields ConversationRow, with the tags, top segment and assignee name of each row.

    The queryset's own SELECT is wrapped in one statement that adds them (queries.wrap_rows_sql), read with raw SQL."""

    def __iter__(self):
        qs = self.queryset
        try:
            compiled = _compile_rows(qs)
        except EmptyResultSet:
            return
        yield from _fetch_rows(qs.db, compiled)


def _compile_rows(qs: QuerySet) -> tuple[str, tuple, list[str], list]:
    """(wrapped SQL, params, value names, converters) of a list_conversations_for_agent queryset."""
    query = qs.query
    compiler = query.get_compiler(qs.db)
    sql, params = compiler.as_sql()
    names = [*query.extra_select, *query.values_select, *query.annotation_select]
    columns = [s[0] for s in compiler.select[: compiler.col_count]]
    converters = compiler.get_converters(columns)
    return queries.wrap_rows_sql(sql), tuple(params), names, list(converters.items())


def _fetch_rows(using: str, compiled: tuple) -> list[ConversationRow]:
    sql, params, names, converters = compiled
    n = len(names)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        records = cursor.fetchall()
    out = []
    for record in records:
        values = list(record[:n])
        for pos, (convs, model_field) in converters:
            for conv in convs:
                values[pos] = conv(values[pos], model_field, connections[using])
        row = ConversationRow(dict(zip(names, values, strict=True)))
        tag_names, segment, assignee = record[n:]
        row.tag_names = tag_names
        if segment is not None:
            color, label, name = segment
            row.segment = (color, label or name)  # str(Segment): its label, or its name
        if assignee is not None:
            # The template showed assignee.agent.name (display name, full name or username), or the
            # username when the user has no agent profile (display name NULL).
            username, display_name, full_name = assignee
            row.assignee_name = username if display_name is None else (display_name or full_name.strip()
                                                                        or username)
        out.append(row)
    return out


# Compiled row queries by the inputs that decide their SQL and parameters (see conversation_rows).
_ROWS_SQL: dict[tuple, tuple] = {}
_ROWS_SQL_MAX = 512


def conversation_rows(user: AbstractBaseUser, filters: InboxFilters, *, inbox_ids: list[int], offset: int,
                      limit: int, search_window: int | None = None) -> list[ConversationRow]:
    """list(list_conversations_for_agent(user, filters, inbox_ids=…)[offset:offset + limit]), one statement.

    Building and compiling that queryset cost ~1.4 ms of CPU, more than the statement itself; its SQL and
    parameters depend only on the filters, the visible inbox ids, the user and the slice, so (without a
    search, whose ids are read while the queryset is built) they are compiled once per such key and reused.
    """
    agent = get_agent(user)
    using = Conversation.objects.db
    key = None
    if not filters.q and agent is not None:
        key = (using, user.pk, agent.sees_all_inboxes, tuple(inbox_ids), filters.view, filters.status, filters.inbox,
               filters.kind, filters.priority, filters.tag, filters.segment, filters.sort, offset, limit)
        compiled = _ROWS_SQL.get(key)
        if compiled is not None:
            return _fetch_rows(using, compiled)
    qs = list_conversations_for_agent(user, filters, inbox_ids=inbox_ids, search_window=search_window)
    qs = qs[offset: offset + limit]
    if key is None:
        return list(qs)
    try:
        compiled = _compile_rows(qs)
    except EmptyResultSet:
        return []
    if len(_ROWS_SQL) >= _ROWS_SQL_MAX:
        _ROWS_SQL.clear()
    _ROWS_SQL[key] = compiled
    return _fetch_rows(qs.db, compiled)


def get_conversation_rows(user: AbstractBaseUser, ids: list[int], filters: InboxFilters) -> list[ConversationRow]:
    """The rows among `ids` that match `filters` (used by the live list to refresh single rows)."""
    return list(list_conversations_for_agent(user, filters).filter(id__in=ids))


def console_lists(agent: AgentProfile, *, teams: bool = False) -> dict:
    """The console's visible inboxes, its small pick lists and the inbox streams' cursors, in one statement
    (queries.console_lists_sql).

    Returns {"inboxes": [Inbox (id, name, kind)], "tags", "segments", "templates", "teams" (when asked):
    [{id, name}] in each model's order, "cursors": {stream: last seq}}. The visible inboxes are those of
    visible_inboxes (its own query as a subquery).
    """
    sql, params, parts = queries.console_lists_sql(agent, teams=teams)
    out: dict = {"inboxes": [], **{key: [] for key, *_ in parts}}
    seqs: dict[int, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for grp, _pos, pk, name, extra, seq in cursor.fetchall():
            if grp == 0:
                out["inboxes"].append(Inbox(id=pk, name=name, kind=extra))
            elif grp <= len(parts):
                out[parts[grp - 1][0]].append(SimpleNamespace(id=pk, name=name))
            else:
                seqs[pk] = seq
    out["cursors"] = {realtime.inbox_stream(pk): seqs.get(pk, 0) for pk in sorted(i.id for i in out["inboxes"])}
    return out
