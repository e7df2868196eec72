"""Routing rule evaluation: the facts about a conversation and the matching of rule conditions.

Pure reads: nothing here writes. `routing.actions` uses it to decide and to explain.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

from django.utils import timezone

from conversations.models import Conversation, Message

from .models import AgentProfile, RoutingRule

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DETECTED_LANGUAGES = ("ENGLISH", "SPANISH", "FRENCH", "GERMAN", "PORTUGUESE", "ITALIAN", "DUTCH")


@functools.lru_cache(maxsize=1)
def _detector():
    from lingua import Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(*[getattr(Language, n) for n in DETECTED_LANGUAGES]).build()


def detect_language(text: str) -> str:
    """ISO 639-1 code of `text` (lingua), or "" when too short or unsure."""
    text = (text or "").strip()
    if len(text) < 8:
        return ""
    language = _detector().detect_language_of(text)
    return language.iso_code_639_1.name.lower() if language else ""


@dataclass
class Facts:
    """Everything rules may test, gathered once per decision."""

    conversation: Conversation
    values: dict[str, Any] = field(default_factory=dict)
    last_agent: AgentProfile | None = None
    account_manager: AgentProfile | None = None
    last_closed_at: datetime | None = None

    def get(self, name: str) -> Any:
        if name.startswith(("prechat.", "attributes.", "meta.")):
            root, _, key = name.partition(".")
            current: Any = self.values.get(root) or {}
            for part in key.split("."):
                if not isinstance(current, dict):
                    return None
                current = current.get(part)
            return current
        return self.values.get(name)


def gather_facts(conversation: Conversation) -> Facts:
    contact = conversation.contact
    meta = conversation.meta or {}
    prechat = meta.get("prechat") or {}
    visitor = meta.get("visitor") or {}
    attrs = contact.custom_attributes or {}
    first = (Message.objects.filter(conversation=conversation, direction=Message.Direction.INCOMING)
             .order_by("id").values_list("body", flat=True).first() or "")
    text = f"{conversation.subject}\n{first}".strip()
    segments = list(contact.segments.all())
    earlier = Conversation.objects.filter(contact=contact).exclude(pk=conversation.pk)
    previous = earlier.filter(assignee__isnull=False).select_related("assignee__agent").order_by(
        "-last_message_at", "-id").first()
    open_high = earlier.filter(status__in=Conversation.ACTIVE_STATUSES, priority__gte=2,
                               assignee__isnull=False).select_related("assignee__agent").order_by("-id").first()
    page_url = visitor.get("page_url") or ""
    language = (prechat.get("language") or contact.language or detect_language(first)
                or (visitor.get("language") or "").split("-")[0]).lower()
    facts = Facts(conversation=conversation)
    facts.values = {
        "inbox": conversation.inbox_id,
        "channel": conversation.inbox.kind,
        "priority": conversation.priority,
        "prechat": prechat,
        "attributes": attrs,
        "meta": meta,
        "segment": [s.label or s.name for s in segments] + [s.name for s in segments],
        "vip_level": max((s.priority_level for s in segments), default=0),
        "history.conversations": earlier.count(),
        "history.open_high_priority": open_high is not None,
        "country": (prechat.get("country") or attrs.get("country") or contact.country
                    or visitor.get("country") or "").upper(),
        "state": (prechat.get("state") or attrs.get("state") or "").upper(),
        "zip": str(prechat.get("zip") or attrs.get("zip") or ""),
        "timezone": prechat.get("timezone") or attrs.get("timezone") or "",
        "language": language,
        "page_url": page_url,
        "campaign": (parse_qs(urlparse(page_url).query).get("utm_campaign") or [""])[0],
        "text": text,
        "tags": list(conversation.tags.values_list("name", flat=True)),
    }
    owner = open_high or previous
    if owner is not None:
        facts.last_agent = getattr(owner.assignee, "agent", None)
        facts.last_closed_at = owner.closed_at or owner.solved_at or owner.last_message_at
    facts.values["last_agent"] = facts.last_agent.pk if facts.last_agent else None
    managers = [s.account_manager for s in segments if s.account_manager_id]
    if managers:
        facts.account_manager = getattr(managers[0], "agent", None)
    facts.values["account_manager"] = facts.account_manager.pk if facts.account_manager else None
    return facts


def within_hours(hours: dict, now: datetime | None = None) -> bool:
    if not isinstance(hours, dict) or not hours.get("days"):
        return True
    try:
        tz = ZoneInfo(hours.get("tz") or "UTC")
    except Exception:
        tz = ZoneInfo("UTC")
    local = (now or timezone.now()).astimezone(tz)
    hhmm = local.strftime("%H:%M")
    return any(start <= hhmm < end for start, end in hours["days"].get(DAYS[local.weekday()], []))


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


def evaluate(rule: RoutingRule, facts: Facts) -> tuple[bool, list[str]]:
    """Whether `rule` matches, with one line per condition for the explanation."""
    lines = []
    results = []
    for cond in rule.conditions or []:
        if not isinstance(cond, dict) or "field" not in cond or "op" not in cond:
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


def sticky_window_open(facts: Facts, minutes: int) -> bool:
    return facts.last_closed_at is None or timezone.now() - facts.last_closed_at <= timedelta(minutes=minutes)
