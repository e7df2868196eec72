"""Every JSON field of the admin refuses, with a form error, what the parser or PostgreSQL cannot take."""

from __future__ import annotations

import pytest

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
