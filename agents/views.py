"""The signed-in person's own page in the console: who they are, their role, and their API tokens."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from conversations.views import agent_required
from omnichannel.errors import ActionError

from .actions import do_create_api_token, do_revoke_api_token


@never_cache
@agent_required
def profile(request: HttpRequest) -> HttpResponse:
    """GET: the profile; POST: a new API token, whose key this one answer shows (it is stored hashed)."""
    new_key, new_token, errors, name, status = None, None, {}, "", 200
    if request.method == "POST":
        name = request.POST.get("name", "")
        try:
            new_token, new_key = do_create_api_token(user=request.user, name=name)
            name, status = "", 201
        except ActionError as exc:
            errors[exc.field or "name"] = exc.message
            status = 400
    return render(request, "console/profile.html", {
        "agent": request.agent, "tokens": request.user.api_tokens.all(), "new_key": new_key,
        "new_token": new_token, "errors": errors, "name": name,
    }, status=status)


@require_POST
@agent_required
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        do_revoke_api_token(actor=request.user, token_id=token_id)
    except ActionError as exc:
        return HttpResponse(exc.message, status=404)
    return redirect("console:profile")
