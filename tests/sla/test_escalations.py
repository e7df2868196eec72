"""SLA escalations: checked when a policy is saved; a step that fails at run time stops nothing else (issue 14)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from sla.actions import do_sweep_sla
from sla.escalations import escalation_errors
from sla.models import SlaEvent, SlaNotification, SlaPolicy
from tests.sla.test_actions import _make_due, clocks, policies, receive  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def test_a_malformed_step_is_skipped_and_every_other_clock_and_step_goes_on(clock, policies, world):  # noqa: F811
    email = policies["email"]
    # Saved before validation existed (or by hand in the database): a team by name, not by id.
    SlaPolicy.objects.filter(pk=email.pk).update(escalations={"breach": [
        {"action": "reassign_team", "team": "Support"}, {"action": "notify", "users": [world.bob.pk]}]})
    sms_policy = policies["fast"]
    SlaPolicy.objects.filter(pk=sms_policy.pk).update(escalations={"breach": [{"action": "add_tag", "tag": "late"}]})
    broken = receive("email")
    other = receive("sms", "+15550007")
    for conv in (broken, other):
        _make_due(clocks(conv)["first_response"], clock.now)
    with mock.patch("sla.actions.db_now", lambda: clock.now):
        assert do_sweep_sla()["breached"] == 2
    assert SlaEvent.objects.filter(kind="breached").count() == 2
    assert SlaNotification.objects.filter(user=world.bob, conversation=broken).exists()  # the next step ran
    assert "late" in other.tags.values_list("name", flat=True)


@pytest.mark.parametrize("escalations, message", [
    ({"breach": [{"action": "reassign_team", "team": "Support"}]}, "breach step 1: team is a team's id"),
    ({"breach": [{"action": "reassign_team", "team": 999999}]}, "no team with id 999999"),
    ({"warning": [{"action": "notify"}]}, "warning step 1: notify whom?"),
    ({"warning": [{"action": "notify", "users": ["bob"]}]}, "users is a list of user ids"),
    ({"breach": [{"action": "explode"}]}, "action must be one of"),
    ({"breach": [{"action": "webhook", "url": "ftp://x"}]}, "url is an http(s) URL"),
    ({"breach": {"action": "raise_priority"}}, "breach: a list of steps"),
    ({"later": []}, "Unknown key 'later'"),
    ([1, 2], "Escalations are an object"),
])
def test_escalations_are_checked_when_the_policy_is_saved(world, escalations, message):
    policy = SlaPolicy(name="P", targets={"first_response": {"normal": 5}}, escalations=escalations)
    with pytest.raises(ValidationError) as exc:
        policy.full_clean()
    assert any(message in m for m in exc.value.message_dict["escalations"]), exc.value.message_dict


def test_valid_escalations_pass(world):
    assert escalation_errors({"warning": [{"action": "notify", "to": "assignee"}], "breach": [
        {"action": "raise_priority"}, {"action": "add_tag", "tag": "sla-breached"},
        {"action": "reassign_team", "team": world.sales.pk}, {"action": "notify", "users": [world.bob.pk]},
        {"action": "webhook", "url": "https://hooks.example.com/sla"}]}) == []


def test_the_admin_form_names_the_bad_step(world):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "r@acme.test", "pw-root-2026")
    client = Client()
    client.force_login(root)
    r = client.post(reverse("admin:sla_slapolicy_add"), {
        "name": "VIP", "position": 1, "is_active": "on", "match": "all", "conditions": "[]",
        "targets": '{"first_response": {"normal": 5}}', "business_time_metrics": "[]", "pause_statuses": "[]",
        "warn_at_percent": 75, "escalations": '{"breach": [{"action": "reassign_team", "team": "Support"}]}'})
    assert r.status_code == 200 and "breach step 1: team is a team&#x27;s id" in r.content.decode()
    assert not SlaPolicy.objects.filter(name="VIP").exists()
