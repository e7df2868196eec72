"""Opening hours: ``{"tz": "Europe/Paris", "days": {"mon": [["09:00", "18:00"]], ...}}``, checked and validated
here for routing rules, the widget's online hours and SLA calendars' forms alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


HOURS_EXAMPLE = '{"tz": "Europe/Paris", "days": {"mon": [["09:00", "18:00"]], "sat": [["10:00", "14:00"]]}}'


def _minutes(value: Any) -> int:
    hours, _, minutes = str(value).strip().partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{value!r} is not a time like 09:00")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or total > 24 * 60:
        raise ValueError(f"{value!r} is not a time of day")
    return total


def hours_errors(hours: Any) -> list[str]:
    """What is wrong with a business-hours value ({"tz", "days": {"mon": [["09:00", "18:00"]], ...}});
    [] when it is usable. Admin forms show these; within_hours() reads the same format."""
    if hours in (None, {}, ""):
        return []
    if not isinstance(hours, dict) or not isinstance(hours.get("days", {}), dict):
        return [f"Use {HOURS_EXAMPLE}"]
    errors = []
    try:
        ZoneInfo(str(hours.get("tz") or "UTC"))
    except Exception:
        errors.append(f"Unknown time zone {hours.get('tz')!r}; use a name such as Europe/Paris")
    for day, spans in hours.get("days", {}).items():
        if day not in DAYS:
            errors.append(f"Unknown day {day!r}; use {', '.join(DAYS)}")
            continue
        if not isinstance(spans, list):
            errors.append(f"{day}: a list of [start, end] pairs such as [[\"09:00\", \"18:00\"]]")
            continue
        for span in spans:
            try:
                if not isinstance(span, list | tuple) or len(span) != 2:
                    raise ValueError(f"{span!r} is not a [start, end] pair such as [\"09:00\", \"18:00\"]")
                if _minutes(span[0]) >= _minutes(span[1]):
                    raise ValueError(f"{span!r}: the end must be after the start")
            except ValueError as exc:
                errors.append(f"{day}: {exc}")
    return errors


def within_hours(hours: dict, now: datetime | None = None) -> bool:
    """Whether `now` falls in the business hours; empty hours mean always open. Times are compared as times
    ("9:00" and "09:00" alike); an unusable span (refused by hours_errors in the admin) never matches."""
    if not isinstance(hours, dict) or not isinstance(hours.get("days"), dict) or not hours["days"]:
        return True
    try:
        tz = ZoneInfo(str(hours.get("tz") or "UTC"))
    except Exception:
        tz = ZoneInfo("UTC")
    local = (now or timezone.now()).astimezone(tz)
    current = local.hour * 60 + local.minute
    spans = hours["days"].get(DAYS[local.weekday()], [])
    for span in spans if isinstance(spans, list) else []:
        try:
            start, end = span
            if _minutes(start) <= current < _minutes(end):
                return True
        except (TypeError, ValueError):
            continue
    return False
