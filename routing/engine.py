"""Routing's setup: the active rules, teams, skills and settings, cached per process.

The setup is cached per process (`routing_setup()`), keyed by a fingerprint of those tables' contents read in
one statement per decision, so any change (admin save, queryset update, ON DELETE SET NULL, a rolled-back
write) is seen at once. Rules are matched with the one condition language (conversations/conditions.py).
Pure reads: nothing here writes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from agents.models import Skill, Team
from conversations.conditions import FACT_GROUPS, CompiledRule, Facts, compile_rule

from . import queries
from .models import RoutingConfig, RoutingRule


@dataclass(frozen=True)
class RoutingSetup:
    """The active rules in position order, every team and skill by id, and the routing settings."""

    rules: list[RoutingRule]
    teams: dict[int, Team]
    skills: dict[int, Skill]
    config: RoutingConfig
    compiled: list[CompiledRule] | None = None  # the rules' conditions compiled (compile_rule), in rules' order
    # Whether a rule reads the contact's segments or history (a condition, or a last agent / account manager
    # target): a decision then reads them with its first round trip (contact_facts_sql).
    reads_contact: bool = True


_setup_lock = threading.Lock()
_setup_cache: dict[str, tuple[tuple, RoutingSetup]] = {}  # database alias -> (fingerprint, setup)


def _load_setup() -> RoutingSetup:
    rules = list(RoutingRule.objects.filter(is_active=True))
    compiled = [compile_rule(rule) for rule in rules]
    contact_targets = (RoutingRule.Target.LAST_AGENT, RoutingRule.Target.ACCOUNT_MANAGER)
    reads_contact = any(FACT_GROUPS.get(field) in ("segments", "history") for rule in compiled
                        for field, _, _ in rule.conditions) or any(
        rule.target in contact_targets or rule.secondary_target in contact_targets for rule in rules)
    config = RoutingConfig.get()
    return RoutingSetup(rules=rules,
                        teams={t.pk: t for t in Team.objects.all()},
                        skills={s.pk: s for s in Skill.objects.all()},
                        config=config,
                        compiled=compiled, reads_contact=reads_contact or config.returning_first)


def cached_setup() -> RoutingSetup | None:
    """The setup this process last cached for this database (perhaps no longer current), or None."""
    cached = _setup_cache.get(connection.alias)
    return cached[1] if cached is not None else None


def routing_setup(version: Any = None) -> RoutingSetup:
    """The rules, teams, skills and settings, read from the database only when they changed.

    `version`: queries.SETUP_VERSION_SQL as read by the caller in this transaction (else it is read here). The
    returned objects are shared by every decision of this process: read them, never change them.
    """
    fingerprint = (version,) if version is not None else _fingerprint()
    if fingerprint[0] is None:  # no version row (yet): the trigger makes it with the next change
        return _load_setup()
    cached = _setup_cache.get(connection.alias)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    setup = _load_setup()
    if _fingerprint() == fingerprint:  # nothing changed while it was read: it is the setup of this fingerprint
        with _setup_lock:
            _setup_cache[connection.alias] = (fingerprint, setup)
    return setup


def _fingerprint() -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(queries.SETUP_VERSION_SELECT_SQL)
        return tuple(cursor.fetchone())



def sticky_window_open(facts: Facts, minutes: int) -> bool:
    return facts.last_closed_at is None or timezone.now() - facts.last_closed_at <= timedelta(minutes=minutes)
