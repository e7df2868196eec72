from datetime import datetime, time

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date

from conversations.views import agent_required

from .selectors import GROUPS, routing_outcomes, sla_outcomes


@agent_required
def sla_report(request: HttpRequest) -> HttpResponse:
    if not request.agent.sees_all_inboxes:
        raise Http404  # supervisors and admins
    group_by = request.GET.get("by", "channel")
    if group_by not in GROUPS:
        group_by = "channel"
    since, until = _date(request, "since"), _date(request, "until")
    rows = sla_outcomes(group_by=group_by, since=since, until=until)
    return render(request, "reporting/sla.html", {"rows": rows, "group_by": group_by, "groups": list(GROUPS),
                                                  "since": since, "until": until})


@agent_required
def routing_report(request: HttpRequest) -> HttpResponse:
    if not request.agent.sees_all_inboxes:
        raise Http404  # supervisors and admins
    since, until = _date(request, "since"), _date(request, "until")
    rows = routing_outcomes(since=_day_start(since), until=_day_start(until))
    return render(request, "reporting/routing.html", {"rows": rows,
                                                      "since": since, "until": until})


def _day_start(day) -> datetime | None:
    """The start of a date in the site's time zone (an aware datetime), or None."""
    return timezone.make_aware(datetime.combine(day, time.min)) if day else None


def _date(request: HttpRequest, name: str):
    """A YYYY-MM-DD query parameter as a date; None when missing or not a real date (2024-02-30)."""
    try:
        return parse_date(request.GET.get(name, "") or "")
    except ValueError:
        return None
