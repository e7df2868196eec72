"""The one condition language: what a rule may test, how a condition is checked, validated and explained.

Routing rules, SLA policies and segment membership rules (and later campaign triggers and bot intents) are
lists of conditions ``{"field": ..., "op": ..., "value": ...}`` matched ``all`` or ``any``. This module is the
only place conditions are understood:

- ``FIELDS`` / ``PREFIXES``, the field catalogue: every field a condition may test, the lazily read group of
  facts it needs, and the subjects it applies to: a ``conversation`` (routing rules, SLA policies) or a
  ``contact`` alone (segment rules). ``OPERATORS``: every operator.
- ``validate_conditions`` (a list of conditions) and ``validate_rule`` (``{"match", "conditions"}``, a
  segment's rule): the one validator, used by the admin forms and the models' ``clean_fields()``; it raises
  ``ConditionError`` whose message names the condition (``Condition 2 (country eq 'US'): ...``).
- ``check(actual, op, expected)``: the reference semantics of every operator; ``evaluate`` matches a rule
  against facts (``Facts`` of a conversation, ``ContactFacts`` of a contact) and explains each condition in
  one line; ``compile_rule`` / ``evaluate_compiled`` do the same with the per-condition work done once
  (routing's hot path), with the same results and lines; ``segment_matches`` is a segment rule's membership.

The explanation format, one line per condition: ``<field> <op> <value!r>: yes|no (is <actual!r>)``;
``ignored malformed condition <cond!r>`` for a condition stored without text field and op (it does not
match); ``no conditions: always matches`` for a rule without conditions.

Semantics (one set for every subject; segment rules had their own until they moved here):

- Text compares case-insensitively; ``eq``/``neq``/``in``/``not_in`` compare values as they are typed in
  JSON otherwise: the number 5 does not equal the text "5" (segments compared the text of both sides);
  ``gt``/``gte``/``lt``/``lte`` compare as numbers, converting text such as "5".
- A missing fact (None) matches only ``neq`` and ``not_in`` (segments matched nothing on a missing value).
- ``exists`` is false for None, "", [], {}, False and 0 (segments: only None and "").
- A list fact (segments, tags, an attribute holding a list) matches when any element does; ``not_in`` when
  none is listed.
- A value that cannot be compared (a number too big for a float, an object compared as a number) does not
  match; evaluating never raises.
- ``within`` tests the clock against business hours (``{"tz", "days"}``), not a fact: conversations only.
- A segment rule: an empty rule means membership by hand only, and a stored rule that does not validate
  matches nobody. A contact's ``country`` and ``language`` are the contact's own fields as stored (a
  conversation's combine the pre-chat answers, attributes and the visitor's location, language is reduced
  to its base language); segment rules do not test segments or history (membership is re-applied when the
  contact changes, not when those do).

Facts are gathered lazily, once per evaluation: a group of facts (segments, history, first message and
language, tags, team) is read the first time a condition needs one of its fields, in one query per group.
Pure reads: nothing here writes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

from django.core.exceptions import ValidationError
from django.db import connection
from lingua import Language, LanguageDetectorBuilder

from . import queries
from .business_hours import hours_errors, within_hours
from .models import Contact, Conversation, Message

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
    return (LanguageDetectorBuilder.from_languages(*[getattr(Language, n) for n in DETECTED_LANGUAGES])
            .with_preloaded_language_models().build())


@functools.lru_cache(maxsize=1)
def _screen():
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


# --- the field catalogue and the operators ------------------------------------------------------

CONVERSATION = "conversation"  # routing rules, SLA policies: facts about a conversation (Facts)
CONTACT = "contact"  # segment rules: facts about a contact alone (ContactFacts)
SUBJECTS = (CONVERSATION, CONTACT)
_CONVERSATION = frozenset({CONVERSATION})
_CONTACT = frozenset({CONTACT})
_BOTH = frozenset(SUBJECTS)


@dataclass(frozen=True)
class Field:
    """A field conditions may test: the lazily read group of facts it needs (None: read with the subject),
    the subjects it applies to, and what it is (admin help)."""

    group: str | None
    subjects: frozenset[str]
    help: str


FIELDS: dict[str, Field] = {
    "inbox": Field(None, _CONVERSATION, "the inbox's id"),
    "channel": Field(None, _CONVERSATION, "the inbox's kind: webchat, email, sms, api, …"),
    "priority": Field(None, _CONVERSATION, "0 low, 1 normal, 2 high, 3 urgent"),
    "team": Field("team", _CONVERSATION, "the conversation's team's name, or empty"),
    "segment": Field("segments", _CONVERSATION, "the contact's segments, by label and by name"),
    "vip_level": Field("segments", _CONVERSATION, "the highest priority level of the contact's segments"),
    "account_manager": Field("segments", _CONVERSATION, "the account manager of the contact's segments"),
    "history.conversations": Field("history", _CONVERSATION, "how many other conversations the contact had"),
    "history.open_high_priority": Field("history", _CONVERSATION,
                                        "the contact has another open, assigned, high priority conversation"),
    "last_agent": Field("history", _CONVERSATION, "the agent of the contact's last conversation"),
    "country": Field(None, _BOTH, "ISO country code (a conversation's: pre-chat, attributes, contact, visitor)"),
    "state": Field(None, _CONVERSATION, "state or region (pre-chat, attributes, visitor)"),
    "zip": Field(None, _CONVERSATION, "postal code (pre-chat, attributes, visitor)"),
    "timezone": Field(None, _CONVERSATION, "time zone (pre-chat, attributes, visitor)"),
    "language": Field("language", _BOTH, "a conversation's base language (es), or the contact's language"),
    "page_url": Field(None, _CONVERSATION, "the page the visitor chats from"),
    "campaign": Field(None, _CONVERSATION, "the page's utm_campaign"),
    "text": Field("message", _CONVERSATION, "the subject and the first message"),
    "tags": Field("tags", _CONVERSATION, "the conversation's tags"),
    "business_hours": Field(None, _CONVERSATION, "with op within only: whether now is within the hours given"),
    "name": Field(None, _CONTACT, "the contact's name"),
    "email": Field(None, _CONTACT, "the contact's email address"),
    "phone": Field(None, _CONTACT, "the contact's phone number"),
}
# Fields named by a prefix and a key (prechat.department, attributes.plan.tier, meta.post_type).
PREFIXES: dict[str, frozenset[str]] = {"prechat.": _CONVERSATION, "attributes.": _BOTH, "meta.": _CONVERSATION}

# Which lazily read group of facts a condition field belongs to (fields not listed come with the conversation).
FACT_GROUPS = {name: spec.group for name, spec in FIELDS.items() if spec.group}

OPERATORS: dict[str, str] = {
    "eq": "equals (text case-insensitively)",
    "neq": "does not equal (true when the fact is missing)",
    "gt": "greater than (as numbers)",
    "gte": "greater than or equal (as numbers)",
    "lt": "less than (as numbers)",
    "lte": "less than or equal (as numbers)",
    "contains": "the text contains the value",
    "startswith": "the text starts with the value, or one of the listed values",
    "in": "is one of the listed values",
    "not_in": "is none of the listed values (true when the fact is missing)",
    "any_of": "the text contains any of the listed words",
    "exists": "is set (not empty, zero or false); takes no value",
    "within": "now is within the business hours given as value ({\"tz\", \"days\"}); conversations only",
}
_NUMERIC_OPS = ("gt", "gte", "lt", "lte")
_LIST_OPS = ("startswith", "in", "not_in", "any_of")
_SCALAR_OPS = ("eq", "neq", "contains")
_CONDITION_KEYS = {"field", "op", "value"}


class ConditionError(ValueError):
    """A malformed rule or condition; the message says which and why, for a form error."""


def field_spec(name: str) -> Field | None:
    """The catalogue's entry for `name` (a prefixed field's is its prefix's), or None when unknown."""
    spec = FIELDS.get(name)
    if spec is not None:
        return spec
    for prefix, subjects in PREFIXES.items():
        if name.startswith(prefix):
            return Field(None, subjects, f"{prefix}<key>")
    return None


def field_names(subject: str) -> list[str]:
    """Every field a condition about `subject` may test, prefixed ones as prefix<key>."""
    return ([name for name, spec in FIELDS.items() if subject in spec.subjects]
            + [f"{prefix}<key>" for prefix, subjects in PREFIXES.items() if subject in subjects])


def help_text(subject: str) -> str:
    """The admin's help for a conditions field about `subject`: the fields and operators it may use."""
    ops = [name for name in OPERATORS if name != "within" or subject == CONVERSATION]
    return (f'Each condition is {{"field", "op", "value"}}. Fields: {", ".join(field_names(subject))}. '
            f'Ops: {", ".join(ops)}.')


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not (isinstance(value, float) and not math.isfinite(value))


def _describe(cond: Any, index: int) -> str:
    """How a validation message names a condition: its number and what it says."""
    if isinstance(cond, dict) and isinstance(cond.get("field"), str) and isinstance(cond.get("op"), str):
        text = f"{cond['field']} {cond['op']}" + (f" {cond['value']!r}" if "value" in cond else "")
    else:
        text = repr(cond)
    return f"Condition {index} ({text[:80] + '…' if len(text) > 80 else text})"


def _condition_problem(cond: Any, subject: str) -> str | None:
    """What is wrong with one condition about `subject`, or None."""
    if not isinstance(cond, dict) or "field" not in cond or "op" not in cond:
        return "each condition needs field, op and usually value, such as " \
               '{"field": "language", "op": "eq", "value": "es"}'
    field, op = cond["field"], cond["op"]
    if not isinstance(field, str) or not isinstance(op, str):
        return 'field and op are text, such as "language" and "eq"'
    extra = sorted(set(cond) - _CONDITION_KEYS, key=str)
    if extra:
        return f"unknown key {extra[0]!r}; a condition has field, op and value"
    spec = field_spec(field)
    if spec is None or subject not in spec.subjects:
        return f"Unknown field {field!r}; use one of {', '.join(field_names(subject))}"
    if field.startswith(tuple(PREFIXES)) and not field.partition(".")[2].strip(". "):
        example = {"prechat": "prechat.department", "attributes": "attributes.plan", "meta": "meta.post_type"}
        return f"{field!r}: name the answer or attribute, e.g. {example[field.partition('.')[0]]}"
    if op not in OPERATORS or (op == "within" and subject != CONVERSATION):
        ops = [name for name in OPERATORS if name != "within" or subject == CONVERSATION]
        return f"Unknown op {op!r}; use one of {', '.join(ops)}"
    if (field == "business_hours") != (op == "within"):
        return "business hours are tested with within, and within tests business_hours"
    value = cond.get("value")
    if op == "within":
        errors = hours_errors(value)
        return ("; ".join(errors) or "give the hours") if errors or not value else None
    if op in _NUMERIC_OPS:
        try:
            number = float(value) if _scalar(value) and not isinstance(value, bool) else math.nan
        except (ValueError, OverflowError):
            number = math.nan
        return None if math.isfinite(number) else f"{op} compares numbers: give a number, such as 5"
    if op in _LIST_OPS:
        values = value if isinstance(value, list) else [value]
        if not values or not all(_scalar(v) for v in values):
            return f"{op} takes a value or a list of values (text or numbers)"
        return None
    if op in _SCALAR_OPS and not _scalar(value):
        if isinstance(value, list):
            return f"{op} takes one value; use in for a list"
        if value is None:
            return f"{op} needs a value; use exists to test that it is set"
        return f"{op} takes one value: text, a number or true/false"
    return None


def validate_conditions(conditions: Any, *, subject: str = CONVERSATION) -> list:
    """`conditions` as a list, or ConditionError naming the first malformed condition and what is wrong."""
    if conditions is None:
        return []
    if not isinstance(conditions, list):
        raise ConditionError('A list such as [{"field": "language", "op": "eq", "value": "es"}]')
    for index, cond in enumerate(conditions, 1):
        problem = _condition_problem(cond, subject)
        if problem:
            raise ConditionError(f"{_describe(cond, index)}: {problem}")
    return conditions


def validate_rule(rule: Any, *, subject: str = CONTACT) -> None:
    """A whole rule ``{"match": "all"|"any", "conditions": [...]}`` (a segment's): ConditionError when
    malformed. None or {} is no rule (membership by hand only)."""
    if rule in (None, {}):
        return
    if not isinstance(rule, dict):
        raise ConditionError("A rule is an object with 'match' and 'conditions'")
    extra = sorted(set(rule) - {"match", "conditions"}, key=str)
    if extra:
        raise ConditionError(f"Unknown key {extra[0]!r}; a rule has 'match' and 'conditions'")
    if rule.get("match", "all") not in ("all", "any"):
        raise ConditionError("'match' must be 'all' or 'any'")
    conditions = rule.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise ConditionError("'conditions' must be a non-empty list")
    validate_conditions(conditions, subject=subject)


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
        return queries.contact_segments_sql(self.conversation.pk, contact_id=self.conversation.contact_id)

    def _history_sql(self) -> tuple[str, list]:
        return queries.contact_history_sql(self.conversation.pk, HISTORY_ROWS + 1,
                                           contact_id=self.conversation.contact_id)

    def _load_contact(self) -> None:
        """The contact's segments and recent history (rules that test one mostly test the other too) in one
        round trip of raw SQL (queries.contact_facts_sql)."""
        conversation = self.conversation
        with connection.cursor() as cursor:
            cursor.execute(*queries.contact_facts_sql(conversation.pk, HISTORY_ROWS + 1,
                                                      contact_id=conversation.contact_id))
            segments = cursor.fetchall()
            cursor.nextset()
            history = cursor.fetchall()
        self._loaded |= {"segments", "history"}
        self._apply_segments(segments)
        self._apply_history(history)

    def _load_segments(self) -> None:
        # Raw SQL here and in _load_history: a decision reads these every time, and building the ORM queries
        # costs more Python than PostgreSQL takes to answer them.
        if self._contact_rows is not None:
            self._apply_segments(self._contact_rows[0])
            return
        if "history" not in self._loaded:
            self._load_contact()
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
        if "segments" not in self._loaded:
            self._load_contact()
            return
        self._apply_history(_fetch(*self._history_sql()))

    def _apply_history(self, history: list[tuple]) -> None:
        conversation = self.conversation
        fields = ("id", "status", "priority", "assignee_id", "assignee__agent__id", "last_message_at", "closed_at",
                  "solved_at")
        rows = [dict(zip(fields, row, strict=True)) for row in history]
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

    def _load_team(self) -> None:
        self.values["team"] = self.conversation.team.name if self.conversation.team_id else ""

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
            return _path(self.values.get(root), key)
        return self.values.get(name)


def _path(current: Any, key: str) -> Any:
    """The value at dotted `key` inside a JSON object (None when any part is missing or not an object)."""
    current = current or {}
    for part in key.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


class ContactFacts:
    """What a segment rule may test about a contact alone: its own fields and custom attributes (no query)."""

    def __init__(self, contact: Contact) -> None:
        self.contact = contact
        self.values: dict[str, Any] = {
            "name": contact.name, "email": contact.email, "phone": contact.phone, "country": contact.country,
            "language": contact.language, "attributes": _mapping(contact.custom_attributes),
        }

    def get(self, name: str) -> Any:
        if name.startswith("attributes."):
            return _path(self.values["attributes"], name.partition(".")[2])
        return self.values.get(name)


def contact_facts_sql(conversation_id: int) -> tuple[str, list]:
    """PostgreSQL, two statements: the segments and the recent history of the conversation's contact, as Facts
    reads them, for a caller to send in a round trip it makes anyway and pass as Facts(contact_rows=...)
    (queries.contact_facts_sql)."""
    return queries.contact_facts_sql(conversation_id, HISTORY_ROWS + 1)


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def gather_facts(conversation: Conversation, *, first_message: str | None = None,
                 contact_rows: tuple[list[tuple], list[tuple]] | None = None) -> Facts:
    return Facts(conversation, first_message=first_message, contact_rows=contact_rows)


# --- the routing setup, cached per process ------------------------------------------------------


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def check(actual: Any, op: str, expected: Any) -> bool:
    """Whether the fact `actual` satisfies `op` with `expected`: the reference semantics of every operator (the
    module docstring says them in words; _tester and the fixture table in tests/conversations/test_conditions.py
    must agree with this code)."""
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
    except (TypeError, ValueError, OverflowError):  # OverflowError: a number too big for a float
        return False
    return False


def clean_conditions(conditions: Any, *, subject: str = CONVERSATION, field: str | None = None) -> list:
    """validate_conditions for a form's clean_<field>() (field None) or a model's clean() (`field` names the
    model field): the same message as a ValidationError."""
    try:
        return validate_conditions(conditions, subject=subject)
    except ConditionError as exc:
        raise ValidationError({field: str(exc)} if field else str(exc)) from None


def clean_model_field(instance: Any, exclude: Any, field: str, *, subject: str, clean_fields: Any,
                      rule: bool = False) -> None:
    """A model's clean_fields(): the model's own checks (`clean_fields`, its super's), then its conditions
    field (`rule`: a whole rule) unless the form at hand excludes it (the changelist's editable columns do);
    every error in one ValidationError by field."""
    errors: dict = {}
    try:
        clean_fields(exclude=exclude)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if not (exclude and field in exclude) and field not in errors:
        try:
            (clean_rule if rule else clean_conditions)(getattr(instance, field), subject=subject, field=field)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)


def clean_rule(rule: Any, *, subject: str = CONTACT, field: str | None = None) -> Any:
    """validate_rule as a ValidationError, like clean_conditions; returns the rule, None for no rule."""
    try:
        validate_rule(rule, subject=subject)
    except ConditionError as exc:
        raise ValidationError({field: str(exc)} if field else str(exc)) from None
    return rule or None


# --- evaluation and its explanation ----------------------------------------------------------------

NO_CONDITIONS = "no conditions: always matches"


def _rule_parts(rule: Any) -> tuple[list, bool]:
    """A rule's conditions and whether all must match: a model with ``conditions`` and ``match``
    (RoutingRule, SlaPolicy) or a rule object ``{"match", "conditions"}`` (a segment's)."""
    if isinstance(rule, dict):
        conditions, match = rule.get("conditions"), rule.get("match", "all")
    else:
        conditions, match = rule.conditions, rule.match
    if not conditions:
        conditions = []
    elif not isinstance(conditions, list):  # stored outside the validator: one malformed condition
        conditions = [conditions]
    return conditions, match == "all"


def _well_formed(cond: Any) -> bool:
    """What evaluation needs of a condition (the validator asks much more): text field and op."""
    return isinstance(cond, dict) and isinstance(cond.get("field"), str) and isinstance(cond.get("op"), str)


def malformed_line(cond: Any) -> str:
    return f"ignored malformed condition {cond!r}"


def line_head(cond: dict) -> str:
    """The start of a condition's explanation line: what it tests."""
    return f"{cond['field']} {cond['op']} {cond.get('value')!r}: "


def line_end(ok: bool, actual_repr: str) -> str:
    """The rest of the line: the result and the fact's value."""
    return f"{'yes' if ok else 'no'} (is {actual_repr})"


def evaluate(rule: Any, facts: Facts | ContactFacts) -> tuple[bool, list[str]]:
    """Whether `rule` matches the facts, with one line per condition for the explanation (module docstring)."""
    conditions, match_all = _rule_parts(rule)
    lines = []
    results = []
    for cond in conditions:
        if not _well_formed(cond):
            lines.append(malformed_line(cond))
            results.append(False)
            continue
        actual = facts.get(cond["field"])
        ok = check(actual, cond["op"], cond.get("value"))
        results.append(ok)
        lines.append(line_head(cond) + line_end(ok, repr(actual)))
    if not results:
        return True, [NO_CONDITIONS]
    return (all(results) if match_all else any(results)), lines


def segment_matches(rule: Any, contact: Contact) -> bool:
    """Whether `contact` belongs to a segment by its membership `rule`. No rule (None, {}): membership by hand
    only; a rule stored without the validator that does not validate matches nobody."""
    if not rule:
        return False
    try:
        validate_rule(rule, subject=CONTACT)
    except ConditionError:
        return False
    return evaluate(rule, ContactFacts(contact))[0]


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
        except (TypeError, ValueError, OverflowError):
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
        except (TypeError, ValueError, OverflowError):
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
    conditions, match_all = _rule_parts(rule)
    compiled = []
    for cond in conditions:
        if not _well_formed(cond):
            compiled.append((None, malformed_line(cond), None))
            continue
        compiled.append((cond["field"], line_head(cond), _tester(cond["op"], cond.get("value"))))
    return CompiledRule(tuple(compiled), match_all)


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
        lines.append(line + line_end(ok, known[1]))
    if not results:
        return True, [NO_CONDITIONS]
    return (all(results) if rule.match_all else any(results)), lines
