"""Reports read recorded transitions; they never call other apps' actions."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q

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
