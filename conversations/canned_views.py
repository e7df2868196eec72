"""The agent's own canned messages, managed from the console (shared ones live in the admin)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from omnichannel.errors import ActionError

from .canned import do_delete_personal_canned, do_save_personal_canned
from .models import CannedMessage
from .views import agent_required


@agent_required
def canned_mine(request: HttpRequest) -> HttpResponse:
    form, errors, status = {"shortcut": "", "title": "", "body": ""}, {}, 200
    if request.method == "POST":
        form = {k: request.POST.get(k, "") for k in form}
        try:
            do_save_personal_canned(user=request.user, **form)
            return redirect("console:canned_mine")
        except ActionError as exc:
            errors[exc.field or "body"] = exc.message
            status = 400
    return render(request, "console/canned_mine.html", {
        "mine": CannedMessage.objects.filter(owner=request.user).order_by("shortcut"),
        "shared": CannedMessage.objects.filter(owner__isnull=True).order_by("shortcut"),
        "form": form, "errors": errors, "agent": request.agent,
    }, status=status)


@require_POST
@agent_required
def canned_delete(request: HttpRequest, canned_id: int) -> HttpResponse:
    do_delete_personal_canned(user=request.user, canned_id=canned_id)
    return redirect("console:canned_mine")
