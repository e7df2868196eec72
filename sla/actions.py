"""SLA clocks: applying policies, clock transitions driven by conversation actions, and the sweep.

Conversation actions call the `on_*` hooks inside their transaction. Breach and warning detection is
a sweep over the indexed due/warn columns, claimed with FOR UPDATE SKIP LOCKED and compared with the
database's now(), so two sweepers never fire a transition twice and a restarted worker catches up.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from agents.models import Team
from conversations import actions as conv_actions
from conversations.conditions import evaluate, gather_facts
from conversations.models import Conversation
from omnichannel.realtime import inbox_stream, publish, publish_many

from . import calendar as cal
from . import queries
from .models import METRICS, SlaClock, SlaEvent, SlaNotification, SlaPolicy

logger = logging.getLogger(__name__)
ACTIVE = (SlaClock.State.RUNNING, SlaClock.State.PAUSED)


def db_now() -> datetime:
    """The one clock due-ness is decided by: the database's now()."""
    with connection.cursor() as cursor:
        # clock_timestamp(): the time now, not the start of the transaction (which may have waited on a lock).
        cursor.execute(queries.DB_NOW_SQL)
        return cursor.fetchone()[0]


def match_policy(conversation: Conversation) -> SlaPolicy | None:
    policies = list(SlaPolicy.objects.filter(is_active=True).select_related("calendar"))
    if not policies:
        return None
    facts = gather_facts(conversation)
    for policy in policies:
        matched, _ = evaluate(policy, facts)
        if matched:
            return policy
    return None


def _event(clock: SlaClock, kind: str, at: datetime, **data) -> bool:
    try:
        with transaction.atomic():
            SlaEvent.objects.create(clock=clock, conversation_id=clock.conversation_id, kind=kind, at=at, data=data)
        return True
    except IntegrityError:
        return False  # already recorded (warned/breached/fulfilled happen once)


def _schedule(clock: SlaClock, policy: SlaPolicy | None, now: datetime) -> None:
    """Set due/warn for a running clock from what is left of its target. An overdue clock keeps when it fell
    due (its lateness shows and sorts it; paused time does not count), and a breached one stays due when its
    breach said, whatever pauses or new targets follow."""
    scale = cal.for_policy(policy, clock.metric)
    left = clock.target_seconds - clock.consumed_seconds
    clock.running_since = now
    if left > 0:
        due = scale.add(now, left)
    elif clock.due_at and clock.due_at <= now:
        due = clock.due_at
    else:  # ran over while paused or unswept: the overrun before now (wall time; business time approximately)
        due = now - timedelta(seconds=-left)
    if clock.breached_at:  # the breach stands (what the consoles showed, what the report counts)
        due = _breach_due(clock) or due
    clock.due_at = due
    pct = (policy.warn_at_percent if policy else 75) / 100
    warn_left = clock.target_seconds * pct - clock.consumed_seconds
    clock.warn_at = None if clock.warned_at else scale.add(now, max(warn_left, 0))


def _breach_due(clock: SlaClock) -> datetime | None:
    """When a breached clock fell due, as its breach event recorded it."""
    data = SlaEvent.objects.filter(clock=clock, kind="breached").values_list("data", flat=True).first() or {}
    try:
        return datetime.fromisoformat(data["due"]) if data.get("due") else None
    except (TypeError, ValueError):
        return None


def _consume(clock: SlaClock, policy: SlaPolicy | None, now: datetime) -> None:
    if clock.state == SlaClock.State.RUNNING and clock.running_since:
        scale = cal.for_policy(policy, clock.metric)
        clock.consumed_seconds += int(scale.between(clock.running_since, now))
        clock.running_since = now


def _start(conversation: Conversation, policy: SlaPolicy, metric: str, now: datetime) -> SlaClock | None:
    minutes = policy.target_minutes(metric, conversation.priority)
    if minutes is None:
        return None
    clock = SlaClock(conversation=conversation, policy=policy, metric=metric, target_seconds=minutes * 60,
                     business_time=metric in (policy.business_time_metrics or []), started_at=now)
    paused = conversation.status in (policy.pause_statuses or [])
    if paused:
        clock.state = SlaClock.State.PAUSED
    else:
        _schedule(clock, policy, now)
    clock.save()
    _event(clock, "started", now, target_seconds=clock.target_seconds, policy=policy.name)
    if paused:
        _event(clock, "paused", now)
    return clock


def _finish(clock: SlaClock, now: datetime, *, cancel: bool = False, reason: str = "") -> None:
    """Fulfil or cancel a clock. `reason` "no_target": cancelled because the conversation's policy has no
    target for it now (a priority without one): _revive brings it back when a target applies again."""
    _consume(clock, clock.policy, now)  # a running clock's running_since becomes `now`, when it stopped
    if cancel:
        clock.state = SlaClock.State.CANCELLED
        _event(clock, "cancelled", now, **({"reason": reason} if reason else {}))
    else:
        clock.state = SlaClock.State.FULFILLED
        clock.fulfilled_at = now
        _event(clock, "fulfilled_late" if clock.breached_at else "fulfilled", now)
    clock.due_at = clock.warn_at = None
    clock.save()


def _refresh_summary(conversation: Conversation) -> None:
    """Denormalize the most urgent active clock onto the conversation (console colour, SLA sort)."""
    clocks = list(SlaClock.objects.filter(conversation=conversation, state__in=ACTIVE))
    running = [c for c in clocks if c.state == SlaClock.State.RUNNING and c.due_at]
    fields = {"sla_due_at": None, "sla_warn_at": None, "sla_metric": "", "sla_paused": False}
    if running:
        soonest = min(running, key=lambda c: c.due_at)
        # Once warned, re-scheduling clears warn_at: the badge stays amber from the warning on.
        fields.update(sla_due_at=soonest.due_at, sla_metric=soonest.metric,
                      sla_warn_at=soonest.warn_at or soonest.warned_at or soonest.due_at)
    elif clocks:
        fields.update(sla_paused=True, sla_metric=clocks[0].metric)
    changed = any(getattr(conversation, k) != v for k, v in fields.items())
    Conversation.objects.filter(pk=conversation.pk).update(**fields)
    for k, v in fields.items():
        setattr(conversation, k, v)
    if changed:
        publish({"type": "conversation", "op": "sla", "conversation_id": conversation.id,
                 "inbox_id": conversation.inbox_id, "sla_due_at": _iso(fields["sla_due_at"]),
                 "sla_warn_at": _iso(fields["sla_warn_at"]), "sla_paused": fields["sla_paused"],
                 "sla_metric": fields["sla_metric"]},
                streams=[inbox_stream(conversation.inbox_id)])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _clocks(conversation: Conversation, metrics=None):
    qs = SlaClock.objects.select_for_update(of=("self",)).select_related("policy__calendar").filter(
        conversation=conversation, state__in=ACTIVE)
    return list(qs.filter(metric__in=metrics) if metrics else qs)


# --- hooks called by conversation actions (inside their transaction) -----------------------


def on_conversation_created(conversation: Conversation) -> None:
    policy = match_policy(conversation)
    if policy is None:
        return
    now = db_now()
    _start(conversation, policy, "first_response", now)
    _start(conversation, policy, "resolution", now)
    _refresh_summary(conversation)


def on_customer_message(conversation: Conversation) -> None:
    """A customer wrote again: the next-response clock starts if an agent had answered."""
    if conversation.first_agent_reply_at is None:
        return
    if SlaClock.objects.filter(conversation=conversation, metric="next_response", state__in=ACTIVE).exists():
        return
    policy = _current_policy(conversation)
    if policy is None:
        return
    now = db_now()
    _start(conversation, policy, "next_response", now)
    for clock in _clocks(conversation, ["periodic_update"]):
        _finish(clock, now, cancel=True)
    _refresh_summary(conversation)


def on_agent_reply(conversation: Conversation) -> None:
    now = db_now()
    for clock in _clocks(conversation, ["first_response", "next_response", "periodic_update"]):
        _finish(clock, now)
    policy = _current_policy(conversation)
    if policy is not None and conversation.is_active:
        _start(conversation, policy, "periodic_update", now)
    _refresh_summary(conversation)


def on_status_changed(conversation: Conversation, old: str, new: str) -> None:
    now = db_now()
    if new in (Conversation.Status.SOLVED, Conversation.Status.CLOSED):
        for clock in _clocks(conversation):
            _finish(clock, now, cancel=clock.metric != "resolution")
        _refresh_summary(conversation)
        return
    if old in (Conversation.Status.SOLVED, Conversation.Status.CLOSED):
        policy = _current_policy(conversation) or match_policy(conversation)
        if policy is not None and not SlaClock.objects.filter(conversation=conversation, metric="resolution",
                                                              state__in=ACTIVE).exists():
            _start(conversation, policy, "resolution", now)
    for clock in _clocks(conversation):
        pauses = new in (clock.policy.pause_statuses if clock.policy else [])
        if pauses and clock.state == SlaClock.State.RUNNING:
            _consume(clock, clock.policy, now)
            clock.state = SlaClock.State.PAUSED
            clock.due_at = clock.warn_at = None
            clock.running_since = None
            clock.save()
            _event(clock, "paused", now, status=new)
        elif not pauses and clock.state == SlaClock.State.PAUSED:
            clock.state = SlaClock.State.RUNNING
            _schedule(clock, clock.policy, now)
            clock.save()
            _event(clock, "resumed", now, status=new)
    _refresh_summary(conversation)


def on_match_changed(conversation: Conversation, *, policy_or_clock: bool | None = None) -> None:
    """Priority, tags, team or segment changed: re-apply the policy and recompute, keeping elapsed time.

    `policy_or_clock`: what any_policy_or_clock_sql() read in the caller's transaction after it locked the
    conversation (False: no policy is active and the conversation has no active clock; None: read it here)."""
    if policy_or_clock is None:
        policy_or_clock = _any_policy_or_clock(conversation)
    if not policy_or_clock:
        return  # no policy to match and no clock to stop: nothing to do (one statement, no facts read)
    policy = match_policy(conversation)
    clocks = _clocks(conversation)
    if not clocks and policy is None:
        return  # no policy applies and no clock runs: nothing to start, stop or show (the summary is empty)
    now = db_now()
    if not clocks and policy is not None and conversation.is_active and not SlaClock.objects.filter(
            conversation=conversation).exists():
        on_conversation_created(conversation)
        return
    for clock in clocks:
        if policy is None:
            _finish(clock, now, cancel=True, reason="no_target")
            continue
        minutes = policy.target_minutes(clock.metric, conversation.priority)
        if minutes is None:
            _finish(clock, now, cancel=True, reason="no_target")
            continue
        _consume(clock, clock.policy, now)
        old_target = clock.target_seconds
        clock.policy = policy
        clock.target_seconds = minutes * 60
        clock.business_time = clock.metric in (policy.business_time_metrics or [])
        if clock.state == SlaClock.State.RUNNING:
            _schedule(clock, policy, now)
        clock.save()
        if old_target != clock.target_seconds:
            _event(clock, "reapplied", now, policy=policy.name, target_seconds=clock.target_seconds)
    if policy is not None and conversation.is_active:
        _revive(conversation, policy, {c.metric for c in clocks if c.state in ACTIVE}, now)
    _refresh_summary(conversation)


def _revive(conversation: Conversation, policy: SlaPolicy, active: set[str], now: datetime) -> None:
    """Bring back the clocks that were cancelled for want of a target (the "no_target" reason) and have one
    again, counting the time since they stopped: the customer kept waiting."""
    for metric in METRICS:
        if metric in active:
            continue
        minutes = policy.target_minutes(metric, conversation.priority)
        if minutes is None:
            continue
        clock = (SlaClock.objects.select_for_update().filter(conversation=conversation, metric=metric)
                 .order_by("-id").first())
        if clock is None or clock.state != SlaClock.State.CANCELLED:
            continue
        last = (SlaEvent.objects.filter(clock=clock, kind="cancelled").order_by("-at", "-id")
                .values_list("data", flat=True).first() or {})
        if last.get("reason") != "no_target":
            continue
        clock.policy, clock.target_seconds = policy, minutes * 60
        clock.business_time = metric in (policy.business_time_metrics or [])
        if conversation.status in (policy.pause_statuses or []):
            clock.state, clock.running_since, clock.due_at, clock.warn_at = SlaClock.State.PAUSED, None, None, None
        else:
            clock.state = SlaClock.State.RUNNING
            if clock.running_since:  # when it was cancelled: that time counts
                _consume(clock, policy, now)
            _schedule(clock, policy, now)
        clock.save()
        _event(clock, "resumed", now, reason="target again", target_seconds=clock.target_seconds)


def any_policy_or_clock_sql(conversation_id: int) -> tuple[str, list]:
    """SQL expression: whether any policy is active or the conversation has an active clock (for a caller to
    fold into a statement it makes anyway, and pass to on_match_changed as `policy_or_clock`)."""
    return queries.any_policy_or_clock_sql(conversation_id, ACTIVE)


def _any_policy_or_clock(conversation: Conversation) -> bool:
    """Whether any policy is active or the conversation has an active clock, in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(*queries.any_policy_or_clock_select_sql(conversation.pk, ACTIVE))
        return bool(cursor.fetchone()[0])


def _current_policy(conversation: Conversation) -> SlaPolicy | None:
    clock = SlaClock.objects.filter(conversation=conversation).select_related("policy__calendar").order_by(
        "-id").first()
    if clock is not None and clock.policy is not None:
        return clock.policy
    return match_policy(conversation)


# --- the sweep ---------------------------------------------------------------------------------


# The claim, one statement: due clocks by the partial index (oldest first) joined to their conversations, both
# rows locked with SKIP LOCKED (the conversation's first, as agent actions lock them): a sweep never waits on a
# row, a conversation an agent is editing right now is left for the next batch, and two sweepers never claim
# the same clock. `{due}` is due_at or warn_at; the literals match the partial indexes.
# Times as epoch seconds: plain floats are read in C, aware datetimes cost ~5 µs each in Python.
_CLAIM_FIELDS = ("id", "conversation_id", "policy_id", "metric", "due_at", "warn_at", "not_warned")


def _from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _claim(kind: str, now: datetime, batch: int) -> list[dict]:
    """The due clocks of one batch, locked (SKIP LOCKED), as plain rows: the few columns the sweep needs.
    Raw SQL, not the ORM (sla/queries.py, claim_sql)."""
    with connection.cursor() as cursor:
        cursor.execute(*queries.claim_sql(kind, now, batch))
        return [dict(zip(_CLAIM_FIELDS, row, strict=True)) for row in cursor.fetchall()]


def _record_events(rows: list[tuple[int, int, str, datetime, dict]]) -> set[tuple[int, str]]:
    """Insert (clock_id, conversation_id, kind, at, data) events in one statement; the (clock, kind) pairs
    actually inserted. The once-only constraint turns a transition already recorded into no row. Raw SQL, not
    the ORM (ON CONFLICT DO NOTHING RETURNING)."""
    if not rows:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(*queries.record_events_sql(rows))
        return {(clock_id, kind) for clock_id, kind in cursor.fetchall()}


def do_sweep_sla(*, batch: int = 200) -> dict[str, int]:
    """Fire due warnings and breaches once each. Safe to run from several workers at once.
    The claim and the events bypass the ORM: raw SQL (_claim, _record_events).

    Loops over batches until nothing is due. Each batch is one transaction: one instant (db_now(), read after
    the sweep lock, so nothing fires early), one claim statement, one UPDATE of the clocks, one INSERT of
    the events, then escalations (only for policies that have some) and one published frame per conversation.
    """
    fired = {"warned": 0, "breached": 0}
    for kind in ("breached", "warned"):
        while True:
            with transaction.atomic():
                # Batches take turns (escalations lock conversations, tags and stream rows in no global
                # order). A sweeper that finds another one sweeping leaves: that one loops until nothing
                # is due, so a worker process is never parked on the lock.
                with connection.cursor() as cursor:
                    cursor.execute(queries.SWEEP_LOCK_SQL)
                    if not cursor.fetchone()[0]:
                        return fired
                now = db_now()
                claimed = _claim(kind, now, batch)
                if claimed:
                    _fire(kind, claimed, now, fired)
            if len(claimed) < batch:
                break
    return fired


def _fire(kind: str, claimed: list[dict], now: datetime, fired: dict[str, int]) -> None:
    ids = [c["id"] for c in claimed]
    now_e = now.timestamp()
    events: list[tuple[int, int, str, datetime, dict]] = []
    if kind == "breached":
        # A sweep that falls behind can find a clock past both its warning and its due time: the warning is
        # recorded too (same instant, before the breach); only the breach escalates.
        warned_too = [c for c in claimed if c["not_warned"] and c["warn_at"] is not None and c["warn_at"] <= now_e]
        for c in warned_too:
            events.append((c["id"], c["conversation_id"], "warned", now, {
                "due": _iso(_from_epoch(c["warn_at"])), "late_seconds": now_e - c["warn_at"], "with_breach": True}))
        SlaClock.objects.filter(pk__in=ids).update(breached_at=now)
        if warned_too:
            SlaClock.objects.filter(pk__in=[c["id"] for c in warned_too]).update(warned_at=now)
        due_key = "due_at"
    else:
        SlaClock.objects.filter(pk__in=ids).update(warned_at=now)
        due_key = "warn_at"
    for c in claimed:
        events.append((c["id"], c["conversation_id"], kind, now, {
            "due": _iso(_from_epoch(c[due_key])), "late_seconds": now_e - c[due_key]}))
    inserted = _record_events(events)
    fired["warned"] += sum(1 for _, k in inserted if k == "warned")
    fired["breached"] += sum(1 for _, k in inserted if k == "breached")

    touched: dict[int, list[dict]] = {}
    for c in claimed:
        if (c["id"], kind) in inserted:
            touched.setdefault(c["conversation_id"], []).append(c)
    if not touched:
        return
    when = "breach" if kind == "breached" else "warning"
    policy_ids = {c["policy_id"] for cs in touched.values() for c in cs if c["policy_id"]}
    policies = SlaPolicy.objects.in_bulk(policy_ids) if policy_ids else {}
    escalating = sorted(cid for cid, cs in touched.items()
                        if any((policies.get(c["policy_id"]) and (policies[c["policy_id"]].escalations or {})
                                .get(when)) for c in cs))
    for conversation_id in escalating:  # the conversation rows are ours since the claim
        conversation = Conversation.objects.get(pk=conversation_id)
        for c in touched[conversation_id]:
            clock = SlaClock(id=c["id"], conversation_id=conversation_id, policy=policies.get(c["policy_id"]),
                             metric=c["metric"], due_at=_from_epoch(c["due_at"]), warn_at=_from_epoch(c["warn_at"]))
            _escalate(conversation, clock, when)
    # The state the consoles show, read after the escalations (which may re-apply the policy).
    states = Conversation.objects.filter(pk__in=touched).order_by("inbox_id", "pk").values_list(
        "pk", "inbox_id", "sla_due_at", "sla_warn_at", "sla_paused")
    publish_many(({"type": "conversation", "op": "sla", "conversation_id": conversation_id, "inbox_id": inbox_id,
                   "sla_event": kind, "metrics": [c["metric"] for c in touched[conversation_id]],
                   "sla_due_at": _iso(sla_due_at), "sla_warn_at": _iso(sla_warn_at), "sla_paused": sla_paused},
                  inbox_stream(inbox_id))
                 for conversation_id, inbox_id, sla_due_at, sla_warn_at, sla_paused in states)


def _escalate(conversation: Conversation, clock: SlaClock, when: str) -> None:
    policy = clock.policy
    label = f"SLA {clock.metric.replace('_', ' ')} {'breached' if when == 'breach' else 'at risk'}"
    for step in (policy.escalations or {}).get(when, []) if policy else []:
        action = step.get("action") if isinstance(step, dict) else None
        try:
            with transaction.atomic():  # a failing step rolls back alone: the sweep goes on
                _run_step(conversation, clock, when, step, action, label)
        except conv_actions.ActionError as exc:
            logger.warning("SLA escalation %r on #%s failed: %s", step, conversation.id, exc.message)
        except Exception:
            logger.exception("SLA escalation %r of policy %r on #%s failed; skipped", step,
                             policy.name, conversation.id)


def _run_step(conversation: Conversation, clock: SlaClock, when: str, step: Any, action: Any, label: str) -> None:
    """One escalation step (sla/escalations.py says what a step may be)."""
    policy = clock.policy
    if action == "notify":
        _notify(conversation, step, f"{label} on #{conversation.id}")
    elif action == "raise_priority":
        if conversation.priority < Conversation.Priority.URGENT:
            conv_actions.do_change_priority(actor=None, conversation=conversation,
                                            priority=conversation.priority + 1)
            conversation.refresh_from_db()
    elif action == "add_tag":
        conv_actions.do_add_tag(actor=None, conversation=conversation, name=step.get("tag") or "sla-breached")
    elif action == "reassign_team":
        team = Team.objects.filter(pk=step.get("team")).first()
        if team is not None:
            conv_actions.do_assign_conversation(actor=None, conversation=conversation, team=team)
    elif action == "webhook" and step.get("url"):
        # a cycle: sla.tasks imports this module (and this module is loaded at start-up, the tasks not)
        from .tasks import call_sla_webhook

        call_sla_webhook.delay_on_commit(step["url"], {
            "event": f"sla.{when}", "conversation_id": conversation.id, "metric": clock.metric,
            "due_at": _iso(clock.due_at), "policy": policy.name}, delivery=f"sla-{clock.pk}-{when}")
    else:
        logger.warning("unknown SLA escalation step %r", step)


def _notify(conversation: Conversation, step: dict, text: str) -> None:
    users = set()
    to = step.get("to")
    if to == "assignee" and conversation.assignee_id:
        users.add(conversation.assignee_id)
    if to == "team_lead" and conversation.team_id and conversation.team.lead_id:
        users.add(conversation.team.lead_id)
    users.update(int(u) for u in step.get("users", []) if str(u).isascii() and str(u).isdigit() and len(str(u)) <= 18)
    for user in get_user_model().objects.filter(pk__in=users, is_active=True):
        SlaNotification.objects.create(user=user, conversation=conversation, text=text[:300])
    if users:
        publish({"type": "notification", "conversation_id": conversation.id, "inbox_id": conversation.inbox_id,
                 "user_ids": sorted(users), "text": text}, streams=[inbox_stream(conversation.inbox_id)])


__all__ = ["METRICS", "do_sweep_sla", "on_agent_reply", "on_conversation_created", "on_customer_message",
           "on_match_changed", "on_status_changed"]
