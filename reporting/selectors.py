"""Reports read recorded transitions; they never call other apps' actions."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q

from routing.models import RoutingDecision
from sla.models import SlaEvent

GROUPS = {
    "channel": "conversation__inbox__kind",
    "team": "conversation__team__name",
    "agent": "conversation__assignee__username",
    "policy": "clock__policy__name",
    "metric": "clock__metric",
}


def sla_outcomes(*, group_by: str, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
    """Achieved / achieved late / breached counts per group, from SlaEvent rows.

    A target is *achieved* when fulfilled before its due time, *missed* when it breached (whether or
    not it was fulfilled later). Achievement rate = achieved / (achieved + missed).
    """
    key = GROUPS[group_by]
    qs = SlaEvent.objects.filter(kind__in=["fulfilled", "fulfilled_late", "breached"])
    if since:
        qs = qs.filter(at__gte=since)
    if until:
        qs = qs.filter(at__lt=until)
    rows = (qs.values(key).annotate(
        achieved=Count("id", filter=Q(kind="fulfilled")),
        achieved_late=Count("id", filter=Q(kind="fulfilled_late")),
        missed=Count("id", filter=Q(kind="breached")))
        .order_by(key))
    out = []
    for row in rows:
        total = row["achieved"] + row["missed"]
        out.append({"group": row[key] or "—", "achieved": row["achieved"], "achieved_late": row["achieved_late"],
                    "missed": row["missed"], "rate": round(100 * row["achieved"] / total, 1) if total else None})
    return out


def routing_outcomes(*, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
    """Per agent, from the stored routing decisions: conversations routed to them (assigned at once), live chats
    offered, accepted and missed (not accepted in time), and the share of offers missed."""
    qs = RoutingDecision.objects.filter(agent__isnull=False)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    rows = (qs.values("agent_id", "agent__display_name", "agent__user__username").annotate(
        assigned=Count("id", filter=Q(outcome="assigned") & ~Q(method="offer")),
        offered=Count("id", filter=Q(outcome="offered")),
        accepted=Count("id", filter=Q(outcome="assigned", method="offer")),
        missed=Count("id", filter=Q(outcome="missed")))
        .order_by("agent__display_name", "agent__user__username"))
    return [{"agent": row["agent__display_name"] or row["agent__user__username"], "assigned": row["assigned"],
             "offered": row["offered"], "accepted": row["accepted"], "missed": row["missed"],
             "missed_rate": round(100 * row["missed"] / row["offered"], 1) if row["offered"] else None}
            for row in rows]
