"""Every JSON field of the admin refuses, with a form error, what the parser or PostgreSQL cannot take."""

from __future__ import annotations

import json

import pytest
from django import forms

pytestmark = pytest.mark.django_db

BAD = {
    "nested too deeply": "[" * 50000 + "]" * 50000,
    "NUL characters": '[{"field": "country", "op": "eq", "value": "\\u0000"}]',
    "lone surrogate": '[{"field": "country", "op": "eq", "value": "\\ud800"}]',
    "NaN and Infinity": '[{"field": "priority", "op": "gt", "value": NaN}]',
    "huge number": '[{"field": "priority", "op": "gt", "value": 1e400}]',
}


@pytest.mark.parametrize("what", BAD)
def test_the_rule_admin_answers_a_form_error_not_a_500(what, make_agent, client):
    from agents.models import Team
    from routing.models import RoutingRule

    client.force_login(make_agent("root", role="admin"))
    team = Team.objects.create(name="Support")
    r = client.post("/admin/routing/routingrule/add/", {
        "name": "R", "position": 1, "match": "all", "is_active": "on", "target": "team", "target_team": team.pk,
        "secondary_target": "", "skill_min_level": 1, "conditions": BAD[what]})
    assert r.status_code == 200 and b"Enter a valid JSON" in r.content
    assert not RoutingRule.objects.exists()


def test_an_agent_profiles_languages_refuse_deep_nesting(make_agent, client):
    from agents.models import AgentProfile

    client.force_login(make_agent("root", role="admin"))
    profile = AgentProfile.objects.get(user__username="root")
    page = client.get(f"/admin/agents/agentprofile/{profile.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form[name].value() if form[name].value() is not None else "" for name in form.fields}
    data["languages"] = "[" * 50000 + "]" * 50000
    r = client.post(f"/admin/agents/agentprofile/{profile.pk}/change/", {k: v for k, v in data.items()
                                                                           if not isinstance(v, list)})
    assert r.status_code == 200 and b"Enter a valid JSON" in r.content


SHAPES = {"null": "null", "a 5,000-digit number": "1" + "0" * 5000, "nested lists": "[[[1]]]"}
FIELDS = [("conversations", "inbox", "settings"), ("campaigns", "widgetconfig", "prechat_fields"),
          ("campaigns", "widgetconfig", "business_hours"), ("campaigns", "widgetconfig", "dispositions"),
          ("sla", "slapolicy", "targets"), ("sla", "slapolicy", "business_time_metrics"),
          ("sla", "slapolicy", "pause_statuses"), ("agents", "agentprofile", "languages"),
          ("conversations", "contact", "custom_attributes")]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("app", "model", "field"), FIELDS)
def test_json_fields_refuse_null_huge_numbers_and_wrong_shapes(app, model, field, shape, make_agent, client):
    """A form error on the field (the rest of the form as the page shows it), never a 500 nor a saved value."""
    from django.apps import apps
    from django.contrib.auth import get_user_model

    from campaigns.models import WidgetConfig
    from conversations.models import ChannelKind, Contact, Inbox
    from sla.models import SlaPolicy

    make_agent("agent")
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    inbox = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    WidgetConfig.objects.create(inbox=inbox)
    SlaPolicy.objects.create(name="P", targets={"first_response": {"normal": 60}})
    Contact.objects.create(name="C")
    obj = apps.get_model(app, model).objects.order_by("pk").first()
    before = getattr(obj, field)
    url = f"/admin/{app}/{model}/{obj.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if isinstance(form.fields[name], forms.JSONField):
            value = json.dumps(value)
        if value is not None and not isinstance(value, bool):
            data[name] = value
        elif value is True:
            data[name] = "on"
    data[field] = SHAPES[shape]
    r = client.post(url, data)
    assert r.status_code == 200, r.content[:300]
    assert field in r.context["adminform"].form.errors
    obj.refresh_from_db()
    assert getattr(obj, field) == before
