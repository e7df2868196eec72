"""What an SLA policy's escalation steps may say, checked when the policy is saved.

``{"warning": [step, …], "breach": [step, …]}``, each step one of:

- ``{"action": "notify", "to": "assignee" | "team_lead"}`` and/or ``"users": [user id, …]``
- ``{"action": "raise_priority"}``
- ``{"action": "add_tag", "tag": "sla-breached"}``
- ``{"action": "reassign_team", "team": <team id>}``
- ``{"action": "webhook", "url": "https://…"}``

A step that still fails when it runs (its team deleted since) is logged and skipped by the sweep
(sla.actions._escalate); the other steps and every other clock go on.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from agents.models import Team

WHEN = ("warning", "breach")
ACTIONS = ("notify", "raise_priority", "add_tag", "reassign_team", "webhook")
NOTIFY_TO = ("assignee", "team_lead")


def _id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 < value < 2**63:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def escalation_errors(value: Any) -> list[str]:
    """Every problem of an escalations value, each naming its step ("breach step 2: …"); [] when valid."""
    if value in (None, "", {}, []):  # no escalations
        return []
    if not isinstance(value, dict):
        return ['Escalations are an object: {"warning": [steps], "breach": [steps]}']
    errors = [f"Unknown key {key!r}: use warning or breach" for key in value if key not in WHEN]
    for when in WHEN:
        steps = value.get(when, [])
        if not isinstance(steps, list):
            errors.append(f"{when}: a list of steps")
            continue
        for n, step in enumerate(steps, 1):
            where = f"{when} step {n}"
            if not isinstance(step, dict):
                errors.append(f"{where}: a step is an object with an action")
                continue
            action = step.get("action")
            if action not in ACTIONS:
                errors.append(f"{where}: action must be one of {', '.join(ACTIONS)}")
            elif action == "notify":
                to, users = step.get("to"), step.get("users", [])
                if to is not None and to not in NOTIFY_TO:
                    errors.append(f"{where}: to must be assignee or team_lead")
                if not isinstance(users, list) or any(_id(u) is None for u in users):
                    errors.append(f"{where}: users is a list of user ids")
                elif users:
                    ids = {_id(u) for u in users}
                    missing = ids - set(get_user_model().objects.filter(pk__in=ids).values_list("pk", flat=True))
                    if missing:
                        errors.append(f"{where}: no user with id {', '.join(map(str, sorted(missing)))}")
                if to is None and not users:
                    errors.append(f"{where}: notify whom? Give to (assignee, team_lead) or users")
            elif action == "add_tag":
                tag = step.get("tag", "sla-breached")
                if not isinstance(tag, str) or not tag.strip() or len(tag) > 50 or "\x00" in tag:
                    errors.append(f"{where}: tag is a name of 1 to 50 characters")
            elif action == "reassign_team":
                team = _id(step.get("team"))
                if team is None:
                    errors.append(f"{where}: team is a team's id (a number), e.g. 3")
                elif not Team.objects.filter(pk=team).exists():
                    errors.append(f"{where}: no team with id {team}")
            elif action == "webhook":
                url = step.get("url")
                parsed = urlparse(url) if isinstance(url, str) else None
                if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
                    errors.append(f"{where}: url is an http(s) URL")
    return errors


def clean_escalations(value: Any) -> None:
    """escalation_errors as a ValidationError (the model's field check)."""
    errors = escalation_errors(value)
    if errors:
        raise ValidationError(errors)
