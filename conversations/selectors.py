"""Reads: permission-checked fetches and the console's lists. Nothing here writes."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from functools import cache, reduce
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.core.exceptions import EmptyResultSet
from django.db import connection, connections, router
from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.db.models.query import ValuesIterable
from psycopg.types.datetime import TimestamptzLoader

from agents.models import AgentProfile, Team
from omnichannel.errors import NotFound

from . import hooks
from .models import Attachment, Contact, ContactSegment, Conversation, Inbox, Message, Segment, Tag


def get_agent(user: AbstractBaseUser) -> AgentProfile | None:
    """The user's agent profile, or None if the user is not an agent (superusers get a virtual admin)."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    try:
        return user.agent
    except AgentProfile.DoesNotExist:
        if user.is_superuser:
            return AgentProfile(user=user, role=AgentProfile.Role.ADMIN)
        return None


def visible_inbox_ids(user: AbstractBaseUser) -> list[int]:
    """Inboxes whose conversations `user` may see: its teams' inboxes, or all for supervisors/admins."""
    agent = get_agent(user)
    if agent is None:
        return []
    if agent.sees_all_inboxes:
        return list(Inbox.objects.order_by("id").values_list("id", flat=True))
    return sorted(set(Inbox.objects.filter(teams__members=agent).values_list("id", flat=True)))


def can_see_inbox(user: AbstractBaseUser, inbox_id: int) -> bool:
    agent = get_agent(user)
    if agent is None:
        return False
    if agent.sees_all_inboxes:
        return True
    return Inbox.objects.filter(id=inbox_id, teams__members=agent).exists()


def access_inbox_by_id(user: AbstractBaseUser, inbox_id: int) -> Inbox:
    try:
        inbox = Inbox.objects.get(id=inbox_id)
    except (Inbox.DoesNotExist, ValueError, TypeError):
        raise NotFound("Inbox not found")
    if not can_see_inbox(user, inbox.id):
        raise NotFound("Inbox not found")
    return inbox


ACCESS_RELATED = ("inbox", "contact", "assignee", "team")


def access_conversation_by_id(user: AbstractBaseUser, conversation_id: int, *, lock: bool = False,
                              inbox_ids: list[int] | None = None, related: tuple[str, ...] = (),
                              base_related: tuple[str, ...] = ACCESS_RELATED) -> Conversation:
    """The conversation if `user` may see it; NotFound for missing and forbidden alike.

    `inbox_ids`: the user's visible inboxes (visible_inbox_ids) when the caller already has them this request.
    `related`: more relations to load in the same query (select_related); `base_related`: the ones loaded by
    default (a caller that never reads one, e.g. the team, may leave it out: each join costs ~0.3-0.5 ms).
    """
    try:
        pk = int(conversation_id)
        if lock:
            conversation = (Conversation.objects.select_for_update(of=("self",)).select_related("inbox", "contact")
                            .get(id=pk))
        else:
            conversation = get_with_related(Conversation, pk, (*base_related, *related))
            if conversation is None:
                raise Conversation.DoesNotExist
    except (Conversation.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound("Conversation not found")
    if inbox_ids is not None:
        if conversation.inbox_id not in inbox_ids:
            raise NotFound("Conversation not found")
    elif not can_see_inbox(user, conversation.inbox_id):
        raise NotFound("Conversation not found")
    return conversation


_RELATED_SQL: dict[tuple, tuple] = {}


def get_with_related(model, pk, related: tuple[str, ...], using: str | None = None):
    """model.objects.select_related(*related).get(pk=pk), or None: the same instances (from_db, each field's
    database converters, related objects cached on their foreign keys), from a statement written once per
    (model, related, database). Building and compiling the ORM's cost ~1 ms of CPU per console page.
    `related`: forward foreign keys of `model` (one level)."""
    rows = _select_related_rows(model, model._meta.pk.name, pk, related, using)
    return rows[0] if rows else None


def list_with_related(model, field_name: str, value, related: tuple[str, ...], using: str | None = None) -> list:
    """list(model.objects.filter(**{field_name: value}).select_related(*related).order_by("pk")), as
    get_with_related reads it."""
    return _select_related_rows(model, field_name, value, related, using)


def _select_related_rows(model, field_name: str, value, related: tuple[str, ...], using: str | None) -> list:
    using = using or router.db_for_read(model)
    key = (model, field_name, related, using)
    spec = _RELATED_SQL.get(key)
    if spec is None:
        spec = _RELATED_SQL[key] = _related_sql(model, field_name, related, using)
    sql, parts, converters, where_field = spec
    connection_ = connections[using]
    with connection_.cursor() as cursor:
        cursor.execute(sql, [where_field.get_db_prep_value(value, connection_)])
        records = cursor.fetchall()
    out = []
    for row in records:
        row = list(row)
        for pos, col, convs in converters:
            for conv in convs:
                row[pos] = conv(row[pos], col, connection_)
        (base_model, names, start, end, _pk_pos, _field), *rest = parts
        obj = base_model.from_db(using, names, row[start:end])
        for rel_model, names, start, end, pk_pos, fk in rest:
            rel_obj = None if row[pk_pos] is None else rel_model.from_db(using, names, row[start:end])
            fk.set_cached_value(obj, rel_obj)
            if rel_obj is not None and fk.unique:  # a one-to-one: the reverse side too, as select_related
                fk.remote_field.set_cached_value(rel_obj, obj)
        out.append(obj)
    return out


def _related_sql(model, field_name: str, related: tuple[str, ...], using: str) -> tuple:
    connection_ = connections[using]
    qn = connection_.ops.quote_name
    tables = [(model, None, "t0")]
    for n, name in enumerate(related, start=1):
        fk = model._meta.get_field(name)
        if not (fk.many_to_one or fk.one_to_one) or fk.auto_created or not fk.concrete:
            raise ValueError(f"{name!r} is not a forward foreign key of {model.__name__}")
        tables.append((fk.related_model, fk, f"t{n}"))
    columns, parts, converters = [], [], []
    joins = [f"{qn(model._meta.db_table)} t0"]
    for rel_model, fk, alias in tables:
        fields = rel_model._meta.concrete_fields
        start = len(columns)
        for f in fields:
            col = f.get_col(alias)
            convs = [*connection_.ops.get_db_converters(col), *f.get_db_converters(connection_)]
            if convs:
                converters.append((len(columns), col, convs))
            columns.append(f"{alias}.{qn(f.column)}")
        pk_pos = start + [f.primary_key for f in fields].index(True)
        parts.append((rel_model, [f.attname for f in fields], start, len(columns), pk_pos, fk))
        if fk is not None:
            join = "LEFT JOIN" if fk.null else "JOIN"
            joins.append(f"{join} {qn(rel_model._meta.db_table)} {alias} ON {alias}.{qn(fk.target_field.column)} = "
                         f"t0.{qn(fk.column)}")
    where_field = model._meta.get_field(field_name)
    if where_field.is_relation:  # a foreign key: compared by the target's value (as filter(fk=pk) does)
        where_field = where_field.target_field
        column = model._meta.get_field(field_name).column
    else:
        column = where_field.column
    sql = (f"SELECT {', '.join(columns)} FROM {' '.join(joins)} WHERE t0.{qn(column)} = %s "
           f"ORDER BY t0.{qn(model._meta.pk.column)}")
    return sql, parts, converters, where_field


def access_contact_by_id(user: AbstractBaseUser, contact_id: int) -> Contact:
    """A contact is visible when the user is a supervisor/admin or sees one of its conversations' inboxes."""
    agent = get_agent(user)
    try:
        contact = Contact.objects.get(id=int(contact_id))
    except (Contact.DoesNotExist, ValueError, TypeError):
        raise NotFound("Contact not found")
    if agent is None:
        raise NotFound("Contact not found")
    if agent.sees_all_inboxes:
        return contact
    if not contact.conversations.filter(inbox_id__in=visible_inbox_ids(user)).exists():
        raise NotFound("Contact not found")
    return contact


def visible_contacts(user: AbstractBaseUser) -> QuerySet[Contact]:
    agent = get_agent(user)
    if agent is None:
        return Contact.objects.none()
    qs = Contact.objects.filter(merged_into__isnull=True)
    if agent.sees_all_inboxes:
        return qs
    return qs.filter(conversations__inbox_id__in=visible_inbox_ids(user)).distinct()


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
        self.assignee_name = ""  # set with the tags (_wrap_rows_sql)
        self.tag_names: list[str] = []
        self.segment: tuple[str, str] | None = None  # (colour, label) of the contact's top segment

    def __repr__(self) -> str:
        return f"<ConversationRow #{self.id}>"


class _RowIterable(ValuesIterable):
    """ValuesIterable that yields ConversationRow, with the tags, top segment and assignee name of each row.

    The queryset's own SELECT is wrapped in one statement that adds them (_wrap_rows_sql), read with raw SQL."""

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
    datetimes = tuple(pos for pos, col in enumerate(columns)
                      if col.output_field.get_internal_type() == "DateTimeField" and pos not in converters)
    return _wrap_rows_sql(sql), tuple(params), names, list(converters.items()), datetimes


def _wrap_rows_sql(sql: str) -> str:
    """The page's rows (`sql`, ordered and sliced) with, per row, its tag names (by name), its contact's top
    segment [colour, label, name] and its assignee's [username, agent display name, full name]: scalar
    subqueries over the page's rows, which keep their order (a subquery scan without joins does not reorder).
    (Joining the assignee and its profile into the row query itself made PostgreSQL plan it for ~3 ms.)"""
    qn = connection.ops.quote_name
    users, agents = qn(get_user_model()._meta.db_table), qn(AgentProfile._meta.db_table)
    tags, through = qn(Tag._meta.db_table), qn(Conversation.tags.through._meta.db_table)
    segments, members = qn(Segment._meta.db_table), qn(ContactSegment._meta.db_table)
    return (
        f"SELECT p.*, ARRAY(SELECT t.name FROM {through} ct JOIN {tags} t ON t.id = ct.tag_id "
        f"WHERE ct.conversation_id = p.id ORDER BY t.name), "
        f"(SELECT ARRAY[s.color, s.label, s.name] FROM {members} m JOIN {segments} s ON s.id = m.segment_id "
        f"WHERE m.contact_id = p.contact_id ORDER BY s.priority_level DESC, s.name LIMIT 1), "
        f"(SELECT ARRAY[u.username, a.display_name, u.first_name || ' ' || u.last_name] FROM {users} u "
        f"LEFT JOIN {agents} a ON a.user_id = u.id WHERE u.id = p.assignee_id) "
        f"FROM ({sql}) p"
    )


def _fetch_rows(using: str, compiled: tuple) -> list[ConversationRow]:
    sql, params, names, converters, datetimes = compiled
    n = len(names)
    db = connections[using]
    with db.cursor() as cursor:
        # psycopg's own (C) timestamptz loader for this cursor instead of Django's Python subclass of it,
        # which only sets the connection's time zone on the result (done below): ~40 % of reading the rows.
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        records = cursor.fetchall()
    tz = db.timezone  # what Django's loader sets (django.db.backends.postgresql: register_tzloader)
    out = []
    for record in records:
        values = list(record[:n])
        for pos in datetimes:
            if values[pos] is not None:
                values[pos] = values[pos].replace(tzinfo=tz)
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


# --- The conversation view --------------------------------------------------------

HISTORY_PAGE = 100


HISTORY_FIELDS = ("id", "conversation_id", "inbox_id", "direction", "sender_type", "sender_user_id", "kind", "body",
                  "delivery_status", "failure_reason", "created_at", "sender_user__username",
                  "sender_user__first_name", "sender_user__last_name")


def visible_inboxes(user: AbstractBaseUser) -> list[Inbox]:
    """The inboxes `user` may see (id, name and kind loaded), by name; see visible_inbox_ids."""
    agent = get_agent(user)
    if agent is None:
        return []
    qs = Inbox.objects.only("id", "name", "kind")
    if not agent.sees_all_inboxes:
        qs = qs.filter(teams__members=agent).distinct()
    return list(qs)


def get_contact_history(user: AbstractBaseUser, conversation: Conversation, *, before_id: int | None = None,
                        after_id: int | None = None, limit: int = HISTORY_PAGE,
                        inboxes: list[Inbox] | None = None) -> list[Message | HistoryMessage]:
    """The contact's messages across every visible conversation and channel, oldest first.

    Messages (the newer-than page) or, for the latest and the older pages, HistoryMessage rows with the same
    attributes (console_html.render_messages reads either), read by raw SQL (_history_sql), not the ORM.

    Each message comes with its sender (name fields) and inbox (from `inboxes`, the user's visible inboxes,
    fetched when not given); attachments are prefetched for the messages whose ``has_attachments`` is true
    (the others have none: don't ask their manager, it would query).
    Queries: 1 (visible inboxes, unless `inboxes` is given) + 1 (messages) + 1 (attachments, if any).
    """
    if inboxes is None:
        inboxes = visible_inboxes(user)
    by_id = {inbox.id: inbox for inbox in inboxes}
    inbox_ids = sorted(by_id)
    if after_id is None:
        # Newest `limit` messages per conversation (index message_conversation_id), then the newest overall:
        # bounded by limit x the contact's conversations, not by their whole history. One hand-written
        # statement (building and compiling the ORM's took ~0.8 ms of CPU) read into HistoryMessage rows.
        sql = _history_sql().format(before=" AND m.id < %s" if before_id is not None else "")
        params = [inbox_ids, *([before_id] if before_id is not None else []), limit, conversation.contact_id, limit]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            records = cursor.fetchall()
        page = [HistoryMessage(*record[:11], inbox=by_id[record[2]],
                               sender_user=HistorySender(*record[11:14]) if record[5] is not None else None,
                               has_attachments=record[14])
                for record in records]
        with_files = [m for m in page if m.has_attachments]
        if with_files:
            by_message = {m.id: m for m in with_files}
            for attachment in Attachment.objects.filter(message_id__in=sorted(by_message)).order_by("id"):
                by_message[attachment.message_id].attachments.append(attachment)
        return page
    qs = (
        Message.objects.filter(conversation__contact_id=conversation.contact_id, inbox_id__in=inbox_ids)
        .select_related("sender_user").only(*HISTORY_FIELDS)
        .annotate(has_attachments=Exists(Attachment.objects.filter(message_id=OuterRef("pk"))))
    )
    if after_id is not None:
        page = list(qs.filter(id__gt=after_id).order_by("id")[:limit])
    else:
        if before_id is not None:
            qs = qs.filter(id__lt=before_id)
        page = list(qs.order_by("-id")[:limit])
        page.reverse()
    inbox_field = Message._meta.get_field("inbox")
    for message in page:
        inbox_field.set_cached_value(message, by_id[message.inbox_id])
    with_files = [m for m in page if m.has_attachments]
    if with_files:
        prefetch_related_objects(with_files, "attachments")
    return page


class HistorySender:
    """A message's sender user: the name fields the history shows."""

    __slots__ = ("username", "first_name", "last_name")

    def __init__(self, username: str, first_name: str, last_name: str):
        self.username, self.first_name, self.last_name = username, first_name, last_name

    def get_full_name(self) -> str:  # AbstractUser.get_full_name
        return f"{self.first_name} {self.last_name}".strip()


class _Files(list):
    """A message's attachments, read like the related manager (``m.attachments.all()``)."""

    def all(self):
        return self


class HistoryMessage:
    """One history message as the console shows it (get_contact_history's raw SQL): the columns of
    HISTORY_FIELDS, its inbox, its sender user (or None) and its attachments (``.attachments.all()``)."""

    __slots__ = ("id", "conversation_id", "inbox_id", "direction", "sender_type", "sender_user_id", "kind", "body",
                 "delivery_status", "failure_reason", "created_at", "inbox", "sender_user", "has_attachments",
                 "attachments")

    def __init__(self, id, conversation_id, inbox_id, direction, sender_type, sender_user_id, kind, body,  # noqa: A002
                 delivery_status, failure_reason, created_at, *, inbox, sender_user, has_attachments):
        self.id, self.conversation_id, self.inbox_id = id, conversation_id, inbox_id
        self.direction, self.sender_type, self.sender_user_id, self.kind = direction, sender_type, sender_user_id, kind
        self.body, self.delivery_status, self.failure_reason = body, delivery_status, failure_reason
        self.created_at, self.inbox, self.sender_user = created_at, inbox, sender_user
        self.has_attachments, self.attachments = has_attachments, _Files()

    def __repr__(self) -> str:
        return f"<HistoryMessage #{self.id}>"


@cache
def _history_sql() -> str:
    """get_contact_history's statement ({before}: the optional "older than" condition)."""
    qn = connection.ops.quote_name
    m, c = qn(Message._meta.db_table), qn(Conversation._meta.db_table)
    users, files = qn(get_user_model()._meta.db_table), qn(Attachment._meta.db_table)
    columns = ", ".join(f"m.{qn(Message._meta.get_field(name).column)}" for name in HISTORY_FIELDS[:11])
    return (
        f"SELECT {columns}, u.username, u.first_name, u.last_name, "
        f"EXISTS(SELECT 1 FROM {files} a WHERE a.message_id = m.id) "
        f"FROM {m} m LEFT JOIN {users} u ON u.id = m.sender_user_id WHERE m.id IN ("
        f"SELECT p.id FROM {c} c CROSS JOIN LATERAL ("
        f" SELECT id FROM {m} m WHERE m.conversation_id = c.id AND m.inbox_id = ANY(%s){{before}}"
        f" ORDER BY m.id DESC LIMIT %s) p WHERE c.contact_id = %s ORDER BY p.id DESC LIMIT %s) "
        "ORDER BY m.id"
    )


class TimelineEvent:
    """One activity line of the panel (conversation_events): kind, data, time and actor (or None)."""

    __slots__ = ("id", "kind", "data", "created_at", "actor")

    def __init__(self, id, kind, data, created_at, actor):  # noqa: A002
        self.id, self.kind, self.data, self.created_at, self.actor = id, kind, data, created_at, actor

    def __repr__(self) -> str:
        return f"<TimelineEvent #{self.id} {self.kind}>"


def conversation_events(conversation: Conversation, limit: int = 20) -> list:
    """The conversation's latest `limit` timeline events, newest first, each with its actor's name fields:
    ``conversation.events.select_related("actor")[:limit]`` read by one hand-written statement (raw SQL, not
    the ORM) into TimelineEvent rows."""
    from .models import ConversationEvent

    qn = connection.ops.quote_name
    meta = ConversationEvent._meta
    sql = (f"SELECT e.id, e.{qn(meta.get_field('kind').column)}, e.{qn(meta.get_field('data').column)}, "
           f"e.{qn(meta.get_field('created_at').column)}, e.{qn(meta.get_field('actor').column)}, "
           f"u.username, u.first_name, u.last_name FROM {qn(meta.db_table)} e "
           f"LEFT JOIN {qn(get_user_model()._meta.db_table)} u ON u.id = e.{qn(meta.get_field('actor').column)} "
           f"WHERE e.{qn(meta.get_field('conversation').column)} = %s ORDER BY e.id DESC LIMIT %s")
    data_field = meta.get_field("data")
    with connection.cursor() as cursor:
        cursor.execute(sql, [conversation.id, int(limit)])
        records = cursor.fetchall()
    return [TimelineEvent(pk, kind, data_field.from_db_value(data, None, connection), created_at,
                          HistorySender(username, first, last) if actor_id is not None else None)
            for pk, kind, data, created_at, actor_id, username, first, last in records]


CONTACT_CONVERSATIONS_LIMIT = 50


def list_contact_conversations(user: AbstractBaseUser, contact_id: int, *,
                               inbox_ids: list[int] | None = None) -> list[Conversation]:
    if inbox_ids is None:
        inbox_ids = visible_inbox_ids(user)
    return list(
        Conversation.objects.filter(contact_id=contact_id, inbox_id__in=inbox_ids)
        .select_related("inbox").only("id", "status", "merged_into_id", "contact_id", "inbox__name", "inbox__kind")
        .order_by("-id")[:CONTACT_CONVERSATIONS_LIMIT]
    )


def list_agents_for_assignment(conversation: Conversation) -> QuerySet[AgentProfile]:
    """Agents who may be assigned `conversation`: members of a team with its inbox, and supervisors/admins."""
    return (
        AgentProfile.objects.filter(
            Q(teams__inboxes=conversation.inbox_id) | Q(role__in=[AgentProfile.Role.SUPERVISOR,
                                                               AgentProfile.Role.ADMIN])
        )
        .filter(user__is_active=True)
        .select_related("user")
        .distinct()
        .order_by("display_name", "user__username")
    )


def held_chats(*, exclude: int | None = None) -> Any:
    """The live chats the engines hold for each agent besides their assigned ones (hooks.chats_held), as a
    query expression over an AgentProfile queryset's rows; None when no engine holds any."""
    held = [expression for expression in hooks.chats_held.collect(agent=OuterRef("pk"), exclude=exclude)
            if expression is not None]
    return reduce(operator.add, held) if held else None


def list_assignable_agents_with_load(conversation: Conversation) -> QuerySet[AgentProfile]:
    """As list_agents_for_assignment, with each agent's live-chat load as routing and the capacity check count
    it: open live chats plus the live chats an engine holds for them (routing: offered to them; pending and
    on-hold chats wait for the customer)."""
    live = (Conversation.objects.filter(assignee_id=OuterRef("user_id"), status=Conversation.Status.OPEN,
                                        inbox__kind="webchat")
            .order_by().values("assignee_id").annotate(n=Count("id")).values("n"))
    load = Coalesce(Subquery(live), 0)
    held = held_chats()
    return list_agents_for_assignment(conversation).annotate(live_chats=load if held is None else load + held)


def max_body_length() -> int:
    return settings.MAX_MESSAGE_LENGTH
