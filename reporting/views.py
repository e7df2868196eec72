from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_date

from conversations.views import agent_required

from .selectors import GROUPS, sla_outcomes


@agent_required
def sla_report(request: HttpRequest) -> HttpResponse:
    if not request.agent.sees_all_inboxes:
        raise Http404  # supervisors and admins
    group_by = request.GET.get("by", "channel")
    if group_by not in GROUPS:
        group_by = "channel"
    since = parse_date(request.GET.get("since", "") or "")
    until = parse_date(request.GET.get("until", "") or "")
    rows = sla_outcomes(group_by=group_by, since=since, until=until)
    return render(request, "reporting/sla.html", {"rows": rows, "group_by": group_by, "groups": list(GROUPS),
                                                  "since": since, "until": until})
