"""Business hours (the widget's opening hours and the routing condition 'within'): one format, validated
in the admin with a message that says what is wrong, compared as times."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from conversations.business_hours import hours_errors, within_hours

PARIS = ZoneInfo("Europe/Paris")
MONDAY_1030 = datetime(2026, 11, 30, 10, 30, tzinfo=PARIS)


def test_times_compare_as_times_not_strings():
    assert within_hours({"tz": "Europe/Paris", "days": {"mon": [["9:00", "18:00"]]}}, MONDAY_1030)
    assert within_hours({"tz": "Europe/Paris", "days": {"mon": [["09:00", "18:00"]]}}, MONDAY_1030)
    assert not within_hours({"tz": "Europe/Paris", "days": {"mon": [["11:00", "18:00"]]}}, MONDAY_1030)
    assert not within_hours({"tz": "Europe/Paris", "days": {"tue": [["00:00", "24:00"]]}}, MONDAY_1030)
    assert within_hours({}, MONDAY_1030) and within_hours({"tz": "UTC", "days": {}}, MONDAY_1030)
    # Unusable spans (refused by the admin) never match and never raise.
    assert not within_hours({"tz": "Europe/Paris", "days": {"mon": ["09:00-18:00", None, [1]]}}, MONDAY_1030)


@pytest.mark.parametrize(("hours", "message"), [
    ({"tz": "Europe/Paris", "days": {"mon": ["09:00-18:00"]}}, "is not a [start, end] pair"),
    ({"tz": "Mars/Olympus", "days": {"mon": [["09:00", "18:00"]]}}, "Unknown time zone"),
    ({"tz": "UTC", "days": {"monday": [["09:00", "18:00"]]}}, "Unknown day"),
    ({"tz": "UTC", "days": {"mon": [["18:00", "09:00"]]}}, "the end must be after the start"),
    ({"tz": "UTC", "days": {"mon": [["9am", "5pm"]]}}, "is not a time like 09:00"),
    ({"tz": "UTC", "days": {"mon": [["09:75", "18:00"]]}}, "is not a time of day"),
    (["09:00", "18:00"], "Use {"),
])
def test_bad_hours_say_what_is_wrong(hours, message):
    errors = hours_errors(hours)
    assert errors and message in " ".join(errors)


def test_good_hours_have_no_errors():
    assert hours_errors({"tz": "America/New_York", "days": {"mon": [["9:00", "12:30"], ["13:30", "18:00"]],
                                                            "sat": [["10:00", "24:00"]]}}) == []
    assert hours_errors({}) == [] and hours_errors(None) == []


@pytest.mark.django_db
def test_admin_forms_refuse_bad_hours(make_agent, client):
    from campaigns.models import WidgetConfig
    from conversations.models import ChannelKind, Inbox

    client.force_login(make_agent("root", role="admin"))
    inbox = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    config = WidgetConfig.objects.create(inbox=inbox)
    page = client.get(f"/admin/campaigns/widgetconfig/{config.pk}/change/")
    assert page.status_code == 200
    form = {k: v for k, v in page.context["adminform"].form.initial.items() if v is not None}
    form.update(inbox=inbox.pk, business_hours='{"tz": "Europe/Paris", "days": {"mon": ["09:00-18:00"]}}')
    for key, value in list(form.items()):
        if isinstance(value, (list, dict)):
            import json

            form[key] = json.dumps(value)
        elif isinstance(value, bool) and not value:
            form.pop(key)
    r = client.post(f"/admin/campaigns/widgetconfig/{config.pk}/change/", form)
    assert r.status_code == 200 and b"is not a [start, end] pair" in r.content
    r = client.post(f"/admin/campaigns/widgetconfig/{config.pk}/change/", {**form, "max_upload_mb": 20,
                                                                            "business_hours": "{}"})
    assert r.status_code == 200 and b"At most 10 MB" in r.content
    base = {"name": "R", "position": 1, "is_active": "on", "match": "all", "target": "team", "skill_min_level": 1,
            "set_tags": "", "conditions": '[{"field": "business_hours", "op": "within", "value": {"tz": "Nowhere"}}]'}
    r = client.post("/admin/routing/routingrule/add/", base)
    assert r.status_code == 200 and b"Unknown time zone" in r.content

