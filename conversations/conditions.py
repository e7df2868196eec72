"""The one condition language: what a rule may test about a conversation, and how a condition matches.

Routing rules, SLA policies (and later segments, campaign triggers and bot intents) are lists of conditions
``{"field": ..., "op": ..., "value": ...}`` matched ``all`` or ``any``; ``evaluate`` matches a rule and explains
each condition in one line, ``check`` is the reference semantics of every operator, ``compile_rule`` /
``evaluate_compiled`` do the same with the per-condition work done once (routing's hot path).

Facts are gathered lazily, once per evaluation: a group of facts (segments, history, first message and
language, tags) is read the first time a condition needs one of its fields, in one query per group. Pure
reads: nothing here writes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agents.models import AgentProfile

from .business_hours import within_hours
from .models import ContactSegment, Conversation, Message, Segment

DETECTED_LANGUAGES = ("ENGLISH", "SPANISH", "FRENCH", "GERMAN", "PORTUGUESE", "ITALIAN", "DUTCH")
# Recognised too, so that (say) a Polish message is not taken for Dutch or Spanish: a light model (low-accuracy
# mode, ~50 MB) screens every text over all of these; a clear result in one of them is kept, anything else is
# decided by the accurate model of the main languages above (~220 MB; short texts need its accuracy).
OTHER_LANGUAGES = ("POLISH", "TURKISH", "SWEDISH", "DANISH", "BOKMAL", "FINNISH", "CZECH", "ROMANIAN", "HUNGARIAN",
                   "GREEK", "RUSSIAN", "UKRAINIAN", "ARABIC", "HEBREW", "HINDI", "JAPANESE", "CHINESE", "KOREAN",
                   "VIETNAMESE", "INDONESIAN", "THAI")
OTHER_MIN_CONFIDENCE = 0.6
# Language detection reads at most this much of the subject and first message: enough for lingua to be sure,
# and a long email costs no more than a chat line.
DETECT_MAX_CHARS = 300
# Earlier conversations read in one query for the history facts; a contact with more is counted in SQL.
HISTORY_ROWS = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=1)
def _detector():
    from lingua import Language, LanguageDetectorBuilder

    return (LanguageDetectorBuilder.from_languages(*[getattr(Language, n) for n in DETECTED_LANGUAGES])
            .with_preloaded_language_models().build())


@functools.lru_cache(maxsize=1)
def _screen():
    from lingua import Language, LanguageDetectorBuilder

    return (LanguageDetectorBuilder.from_languages(*[getattr(Language, n)
                                                     for n in DETECTED_LANGUAGES + OTHER_LANGUAGES])
            .with_low_accuracy_mode().with_preloaded_language_models().build())


@functools.lru_cache(maxsize=2048)
def _detect(text: str) -> str:
    screened = _screen().compute_language_confidence_values(text)
    if screened and screened[0].language.name in OTHER_LANGUAGES and screened[0].value >= OTHER_MIN_CONFIDENCE:
        return screened[0].language.iso_code_639_1.name.lower()
    language = _detector().detect_language_of(text)
    return language.iso_code_639_1.name.lower() if language else ""


def detect_language(text: str) -> str:
    """ISO 639-1 code of `text` (lingua, on its first DETECT_MAX_CHARS characters), or "" when too short or unsure.

    The detector is built once per process, and a text is detected once (a re-routed conversation is not
    detected again)."""
    text = (text or "").strip()[:DETECT_MAX_CHARS]
    if len(text) < 8:
        return ""
    return _detect(text)


# Which lazily read group of facts a condition field belongs to (fields not listed come with the conversation).
FACT_GROUPS = {
    "segment": "segments", "vip_level": "segments", "account_manager": "segments",
    "history.conversations": "history", "history.open_high_priority": "history", "last_agent": "history",
    "text": "message", "language": "language", "tags": "tags",
}


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    """A fact read as text: strings as they are, numbers as their digits, anything else (lists, objects) as
    missing."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


class Facts:
    """Everything rules may test about one conversation, each group read once and only when needed.

    `values` holds the facts read so far (callers may add their own, e.g. SLA policies add "team");
    `last_agent_id` / `account_manager_id` are AgentProfile ids, `last_closed_at` when the last agent's
    conversation ended.
    """

    def __init__(self, conversation: Conversation, *, first_message: str | None = None,
                 contact_rows: tuple[list[tuple], list[tuple]] | None = None) -> None:
        self.conversation = conversation
        self._first_message = first_message
        self._contact_rows = contact_rows  # contact_facts_sql's two results, read by the caller
        self._loaded: set[str] = set()
        contact = conversation.contact
        # Meta and attributes come from channels and API clients: any JSON shape. A part that is not what the
        # facts expect reads as missing; a value that is not text is read as its text.
        meta = _mapping(conversation.meta)
        prechat = _mapping(meta.get("prechat"))
        visitor = _mapping(meta.get("visitor"))
        attrs = _mapping(contact.custom_attributes)
        page_url = _text(visitor.get("page_url"))
        self.values: dict[str, Any] = {
            "inbox": conversation.inbox_id,
            "channel": conversation.inbox.kind,
            "priority": conversation.priority,
            "prechat": prechat,
            "attributes": attrs,
            "meta": meta,
            "country": _text(prechat.get("country") or attrs.get("country") or contact.country
                             or visitor.get("country")).upper(),
            "state": _text(prechat.get("state") or attrs.get("state") or visitor.get("region")).upper(),
            "zip": _text(prechat.get("zip") or attrs.get("zip") or visitor.get("postal_code")),
            "timezone": _text(prechat.get("timezone") or attrs.get("timezone") or visitor.get("time_zone")),
            "page_url": page_url,
            "campaign": (parse_qs(urlparse(page_url).query).get("utm_campaign") or [""])[0],
        }
        self._last_agent_id: int | None = None
        self._last_closed_at: datetime | None = None
        self._last_finished = False  # the last agent's conversation is solved or closed
        self._account_manager_id: int | None = None

    # --- lazily read groups -------------------------------------------------------------------

    def _need(self, group: str) -> None:
        if group in self._loaded:
            return
        self._loaded.add(group)
        getattr(self, f"_load_{group}")()

    def _load_message(self) -> None:
        if self._first_message is None:
            self._first_message = (Message.objects.filter(conversation=self.conversation,
                                                          direction=Message.Direction.INCOMING)
                                   .order_by("id").values_list("body", flat=True).first() or "")
        self.values["text"] = f"{self.conversation.subject}\n{self._first_message}".strip()

    def _load_language(self) -> None:
        meta = _mapping(self.conversation.meta)
        prechat = _mapping(meta.get("prechat"))
        visitor = _mapping(meta.get("visitor"))
        language = _text(prechat.get("language")) or self.conversation.contact.language
        if not language:
            self._need("message")
            language = detect_language(self._first_message)
        # Every source as its base language: "es-MX", "es_MX" and "ES" are "es" (rules name base languages).
        language = language or _text(visitor.get("language"))
        self.values["language"] = str(language).strip().replace("_", "-").split("-")[0].lower()

    def _segments_sql(self) -> tuple[str, list]:
        return _segments_sql("%s", [self.conversation.contact_id])

    def _history_sql(self) -> tuple[str, list]:
        return _history_sql("%s", [self.conversation.contact_id], self.conversation.pk)

    def _load_contact(self) -> bool:
        """PostgreSQL: the contact's segments and recent history (rules that test one mostly test the other
        too) in one round trip; whether it did."""
        if connection.vendor != "postgresql":
            return False
        (segments_sql, segments_params), (history_sql, history_params) = self._segments_sql(), self._history_sql()
        with connection.cursor() as cursor:
            cursor.execute(f"{segments_sql}; {history_sql}", [*segments_params, *history_params])
            segments = cursor.fetchall()
            cursor.nextset()
            history = cursor.fetchall()
        self._loaded |= {"segments", "history"}
        self._apply_segments(segments)
        self._apply_history(history)
        return True

    def _load_segments(self) -> None:
        # Raw SQL here and in _load_history: a decision reads these every time, and building the ORM queries
        # costs more Python than PostgreSQL takes to answer them.
        if self._contact_rows is not None:
            self._apply_segments(self._contact_rows[0])
            return
        if "history" not in self._loaded and self._load_contact():
            return
        self._apply_segments(_fetch(*self._segments_sql()))

    def _apply_segments(self, rows: list[tuple]) -> None:
        self.values["segment"] = [label or name for name, label, *_ in rows] + [name for name, *_ in rows]
        self.values["vip_level"] = max((level for _, _, level, _, _ in rows), default=0)
        managers = [agent_id for _, _, _, manager, agent_id in rows if manager]
        self._account_manager_id = managers[0] if managers else None
        self.values["account_manager"] = self._account_manager_id

    def _load_history(self) -> None:
        if self._contact_rows is not None:
            self._apply_history(self._contact_rows[1])
            return
        if "segments" not in self._loaded and self._load_contact():
            return
        self._apply_history(_fetch(*self._history_sql()))

    def _apply_history(self, history: list[tuple]) -> None:
        conversation = self.conversation
        fields = ("id", "status", "priority", "assignee_id", "assignee__agent__id", "last_message_at", "closed_at",
                  "solved_at")
        rows = [dict(zip(fields, row, strict=True)) for row in history]
        for row in rows:
            for name in ("last_message_at", "closed_at", "solved_at"):
                row[name] = db_datetime(row[name])
        if len(rows) > HISTORY_ROWS:  # a long history: count and pick in SQL
            earlier = Conversation.objects.filter(contact_id=conversation.contact_id).exclude(pk=conversation.pk)
            count = earlier.count()
            assigned = earlier.filter(assignee__isnull=False)
            open_high = (assigned.filter(status__in=Conversation.ACTIVE_STATUSES, priority__gte=2)
                         .order_by("-id").values(*fields).first())
            owner = open_high or assigned.order_by("-last_message_at", "-id").values(*fields).first()
        else:
            count = len(rows)
            assigned = [r for r in rows if r["assignee_id"] is not None]
            open_high = next((r for r in assigned if r["status"] in Conversation.ACTIVE_STATUSES
                              and r["priority"] >= 2), None)  # rows are newest first
            # As PostgreSQL orders "-last_message_at": a missing time first, then the latest; then the newest.
            owner = open_high or max(assigned, default=None, key=lambda r: (
                r["last_message_at"] is None, r["last_message_at"] or _EPOCH, r["id"]))
        self.values["history.conversations"] = count
        self.values["history.open_high_priority"] = open_high is not None
        if owner is not None:
            self._last_finished = owner["status"] in (Conversation.Status.SOLVED, Conversation.Status.CLOSED)
            self._last_agent_id = owner["assignee__agent__id"]
            self._last_closed_at = owner["closed_at"] or owner["solved_at"] or owner["last_message_at"]
        self.values["last_agent"] = self._last_agent_id

    def _load_tags(self) -> None:
        self.values["tags"] = list(self.conversation.tags.values_list("name", flat=True))

    # --- reading ------------------------------------------------------------------------------

    @property
    def last_agent_id(self) -> int | None:
        self._need("history")
        return self._last_agent_id

    @property
    def last_closed_at(self) -> datetime | None:
        self._need("history")
        return self._last_closed_at

    @property
    def last_finished(self) -> bool:
        """Whether the last agent's conversation is over (solved or closed): the customer is writing again."""
        self._need("history")
        return self._last_finished

    @property
    def account_manager_id(self) -> int | None:
        self._need("segments")
        return self._account_manager_id

    def get(self, name: str) -> Any:
        if name not in self.values:
            group = FACT_GROUPS.get(name)
            if group:
                self._need(group)
        if name.startswith(("prechat.", "attributes.", "meta.")):
            root, _, key = name.partition(".")
            current: Any = self.values.get(root) or {}
            for part in key.split("."):
                if not isinstance(current, dict):
                    return None
                current = current.get(part)
            return current
        return self.values.get(name)


def _segments_sql(contact: str, params: list) -> tuple[str, list]:
    """The contact's segments (`contact`: SQL for its id, with `params`), as Facts reads them."""
    return (f"SELECT s.name, s.label, s.priority_level, s.account_manager_id, a.id"
            f" FROM {Segment._meta.db_table} s JOIN {ContactSegment._meta.db_table} cs ON cs.segment_id = s.id"
            f" LEFT JOIN {AgentProfile._meta.db_table} a ON a.user_id = s.account_manager_id"
            f" WHERE cs.contact_id = {contact} ORDER BY s.priority_level DESC, s.name",  # Segment's ordering
            params)


def _history_sql(contact: str, params: list, conversation_id: int) -> tuple[str, list]:
    """The contact's other conversations, newest first, as Facts reads them (HISTORY_ROWS + 1 at most)."""
    # The agent by key per row (a join hashed all the agents for a few rows).
    return (f"SELECT c.id, c.status, c.priority, c.assignee_id,"
            f" (SELECT a.id FROM {AgentProfile._meta.db_table} a WHERE a.user_id = c.assignee_id),"
            f" c.last_message_at, c.closed_at, c.solved_at FROM {Conversation._meta.db_table} c"
            f" WHERE c.contact_id = {contact} AND c.id <> %s ORDER BY c.id DESC LIMIT %s",
            [*params, conversation_id, HISTORY_ROWS + 1])


def contact_facts_sql(conversation_id: int) -> tuple[str, list]:
    """PostgreSQL, two statements: the segments and the recent history of the conversation's contact, as Facts
    reads them, for a caller to send in a round trip it makes anyway and pass as Facts(contact_rows=...)."""
    contact = f"(SELECT contact_id FROM {Conversation._meta.db_table} WHERE id = %s)"
    segments_sql, segments_params = _segments_sql(contact, [conversation_id])
    history_sql, history_params = _history_sql(contact, [conversation_id], conversation_id)
    return f"{segments_sql}; {history_sql}", [*segments_params, *history_params]


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def db_datetime(value: Any) -> datetime | None:
    """A datetime column read with raw SQL (SQLite gives text or a naive datetime, both in UTC)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if isinstance(value, datetime) and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def gather_facts(conversation: Conversation, *, first_message: str | None = None,
                 contact_rows: tuple[list[tuple], list[tuple]] | None = None) -> Facts:
    return Facts(conversation, first_message=first_message, contact_rows=contact_rows)


# --- the routing setup, cached per process ------------------------------------------------------


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def check(actual: Any, op: str, expected: Any) -> bool:
    def norm(v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    if op == "exists":
        return actual not in (None, "", [], {}, False, 0)
    if op == "within":
        return within_hours(expected)
    if isinstance(actual, list):  # segments, tags: true when any element satisfies the op
        if op == "not_in":
            return not any(norm(a) in [norm(e) for e in _as_list(expected)] for a in actual)
        return any(check(a, op, expected) for a in actual)
    if actual is None:
        return op in ("neq", "not_in")
    try:
        if op == "eq":
            return norm(actual) == norm(expected)
        if op == "neq":
            return norm(actual) != norm(expected)
        if op in ("gt", "gte", "lt", "lte"):
            a, b = float(actual), float(expected)
            return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
        if op == "contains":
            return str(expected).lower() in str(actual).lower()
        if op == "startswith":
            return any(str(actual).lower().startswith(str(e).lower()) for e in _as_list(expected))
        if op == "in":
            return norm(actual) in [norm(e) for e in _as_list(expected)]
        if op == "not_in":
            return norm(actual) not in [norm(e) for e in _as_list(expected)]
        if op == "any_of":
            text = str(actual).lower()
            return any(str(word).lower() in text for word in _as_list(expected))
    except (TypeError, ValueError):
        return False
    return False


def evaluate(rule: Any, facts: Facts) -> tuple[bool, list[str]]:
    """Whether `rule` matches, with one line per condition for the explanation."""
    lines = []
    results = []
    for cond in rule.conditions or []:
        if not isinstance(cond, dict) or not isinstance(cond.get("field"), str) or not isinstance(cond.get("op"), str):
            lines.append(f"ignored malformed condition {cond!r}")
            results.append(False)
            continue
        actual = facts.get(cond["field"])
        ok = check(actual, cond["op"], cond.get("value"))
        results.append(ok)
        lines.append(f"{cond['field']} {cond['op']} {cond.get('value')!r}: {'yes' if ok else 'no'} "
                     f"(is {actual!r})")
    if not results:
        return True, ["no conditions: always matches"]
    matched = all(results) if rule.match == "all" else any(results)
    return matched, lines


# --- conditions compiled once per setup ------------------------------------------------------------


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _tester(op: str, expected: Any):
    """check(actual, op, expected) as a function of `actual` alone, with everything that depends only on the
    condition worked out once: same result for every value (check's own code is the reference)."""
    if op == "exists":
        return lambda actual: actual not in (None, "", [], {}, False, 0)
    if op == "within":
        return lambda actual: within_hours(expected)
    scalar = _scalar_tester(op, expected)
    if op == "not_in":
        listed = [_norm(e) for e in _as_list(expected)]

        def not_in_list(actual: Any) -> bool:
            return not any(_norm(a) in listed for a in actual)
        list_test = not_in_list
    else:
        def any_element(actual: Any) -> bool:
            return any(test(a) for a in actual)
        list_test = any_element
    none_result = op in ("neq", "not_in")

    def test(actual: Any) -> bool:
        if isinstance(actual, list):
            return list_test(actual)
        if actual is None:
            return none_result
        try:
            return scalar(actual)
        except (TypeError, ValueError):
            return False
    return test


def _scalar_tester(op: str, expected: Any):
    """check's comparisons for an actual value that is neither a list nor None (errors: False, by the caller)."""
    if op in ("eq", "neq"):
        want = _norm(expected)
        return (lambda actual: _norm(actual) == want) if op == "eq" else (lambda actual: _norm(actual) != want)
    if op in ("gt", "gte", "lt", "lte"):
        try:
            bound = float(expected)
        except (TypeError, ValueError):
            def refuse(actual: Any) -> bool:
                float(actual)  # check converts the actual value first: the same errors
                return False
            return refuse
        compare = {"gt": float.__gt__, "gte": float.__ge__, "lt": float.__lt__, "lte": float.__le__}[op]
        return lambda actual: compare(float(actual), bound)
    if op == "contains":
        needle = str(expected).lower()
        return lambda actual: needle in str(actual).lower()
    if op == "startswith":
        prefixes = tuple(str(e).lower() for e in _as_list(expected))
        return lambda actual: str(actual).lower().startswith(prefixes)
    if op in ("in", "not_in"):
        listed = [_norm(e) for e in _as_list(expected)]
        return (lambda actual: _norm(actual) in listed) if op == "in" else (lambda actual: _norm(actual) not in listed)
    if op == "any_of":
        words = [str(word).lower() for word in _as_list(expected)]

        def any_of(actual: Any) -> bool:
            text = str(actual).lower()
            return any(word in text for word in words)
        return any_of
    return lambda actual: False


@dataclass(frozen=True)
class CompiledRule:
    """A rule's conditions, each as (field, the explanation line's start, test) or (None, the whole line, None)
    for a malformed one; evaluate_compiled gives what evaluate(rule, facts) gives."""

    conditions: tuple[tuple[str | None, str, Any], ...]
    match_all: bool


def compile_rule(rule: Any) -> CompiledRule:
    conditions = []
    for cond in rule.conditions or []:
        if not isinstance(cond, dict) or not isinstance(cond.get("field"), str) or not isinstance(cond.get("op"), str):
            conditions.append((None, f"ignored malformed condition {cond!r}", None))
            continue
        conditions.append((cond["field"], f"{cond['field']} {cond['op']} {cond.get('value')!r}: ",
                           _tester(cond["op"], cond.get("value"))))
    return CompiledRule(tuple(conditions), rule.match == "all")


def evaluate_compiled(rule: CompiledRule, facts: Facts, seen: dict[str, tuple[Any, str]]) -> tuple[bool, list[str]]:
    """evaluate() for a compiled rule. `seen`: the facts read so far in this decision with their repr (one dict
    per decision: a fact is read, and shown, once however many rules test it)."""
    lines = []
    results = []
    for field, line, test in rule.conditions:
        if field is None:
            lines.append(line)
            results.append(False)
            continue
        known = seen.get(field)
        if known is None:
            actual = facts.get(field)
            known = seen[field] = (actual, repr(actual))
        ok = test(known[0])
        results.append(ok)
        lines.append(f"{line}{'yes' if ok else 'no'} (is {known[1]})")
    if not results:
        return True, ["no conditions: always matches"]
    return (all(results) if rule.match_all else any(results)), lines
