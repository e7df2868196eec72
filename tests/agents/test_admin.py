"""Who may change roles, users and tokens in the admin: nobody raises their own privileges (issue 14)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from agents.actions import do_set_agent_role
from agents.models import AgentProfile

pytestmark = pytest.mark.django_db
User = get_user_model()


def _login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _profile_form(agent: AgentProfile, **changes) -> dict:
    data = {"user": agent.user_id, "display_name": agent.display_name, "avatar_url": "", "role": agent.role,
            "teams": [t.pk for t in agent.teams.all()], "languages": "[]", "max_concurrent": agent.max_concurrent,
            "max_concurrent_async": agent.max_concurrent_async, "timezone": "",
            "agentskill_set-TOTAL_FORMS": "0", "agentskill_set-INITIAL_FORMS": "0",
            "agentskill_set-MIN_NUM_FORMS": "0", "agentskill_set-MAX_NUM_FORMS": "1000"}
    data.update(changes)
    return data


@pytest.fixture
def dana(make_agent):
    """An admin by role (not a superuser)."""
    return make_agent("dana", role="admin")


def test_a_supervisor_cannot_give_himself_the_admin_role(world):
    bob = AgentProfile.objects.get(user=world.bob)
    client = _login(world.bob)
    url = reverse("admin:agents_agentprofile_change", args=[bob.pk])
    r = client.post(url, _profile_form(bob, role="admin"))
    assert r.status_code in (302, 200, 403)
    bob.refresh_from_db()
    world.bob.refresh_from_db()
    assert bob.role == "supervisor"
    assert not world.bob.has_perm("auth.change_user") and not world.bob.is_superuser


def test_a_supervisor_cannot_change_anyones_role(world):
    alice = AgentProfile.objects.get(user=world.alice)
    client = _login(world.bob)
    page = client.get(reverse("admin:agents_agentprofile_change", args=[alice.pk])).content.decode()
    assert 'name="role"' not in page  # shown read-only
    client.post(reverse("admin:agents_agentprofile_change", args=[alice.pk]), _profile_form(alice, role="admin"))
    alice.refresh_from_db()
    assert alice.role == "agent"


def test_a_supervisor_edits_an_agents_limits_but_not_which_user_it_is(world):
    alice = AgentProfile.objects.get(user=world.alice)
    client = _login(world.bob)
    r = client.post(reverse("admin:agents_agentprofile_change", args=[alice.pk]),
                    _profile_form(alice, max_concurrent=7, user=world.bob.pk))
    assert r.status_code == 302, r.content.decode()[:2000]
    alice.refresh_from_db()
    assert alice.max_concurrent == 7 and alice.user_id == world.alice.pk


def test_an_admin_assigns_roles_to_others_but_not_to_himself(world, dana):
    alice = AgentProfile.objects.get(user=world.alice)
    client = _login(dana)
    r = client.post(reverse("admin:agents_agentprofile_change", args=[alice.pk]), _profile_form(alice, role="supervisor"))
    assert r.status_code == 302, r.content.decode()[:2000]
    alice.refresh_from_db()
    world.alice.refresh_from_db()
    assert alice.role == "supervisor" and world.alice.is_staff
    own = AgentProfile.objects.get(user=dana)
    page = client.get(reverse("admin:agents_agentprofile_change", args=[own.pk])).content.decode()
    assert 'name="role"' not in page


def test_the_user_form_hides_superuser_staff_and_permissions_from_non_superusers(world, dana):
    client = _login(dana)
    url = reverse("admin:auth_user_change", args=[dana.pk])
    page = client.get(url).content.decode()
    for field in ("is_superuser", "is_staff", "groups", "user_permissions"):
        assert f'name="{field}"' not in page, field
    client.post(url, {"username": "dana", "first_name": "Dana", "last_name": "", "email": "d@acme.test",
                      "is_active": "on", "is_superuser": "on", "is_staff": "on",
                      "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
                      "initial-date_joined_0": "2026-01-01", "initial-date_joined_1": "00:00:00"})
    dana.refresh_from_db()
    assert not dana.is_superuser


def test_a_non_superuser_cannot_edit_a_superuser(world, dana):
    root = User.objects.create_superuser("root", "root@acme.test", "pw-root-2026")
    client = _login(dana)
    page = client.get(reverse("admin:auth_user_change", args=[root.pk]))
    assert page.status_code == 403 or 'name="username"' not in page.content.decode()  # at most a read-only view
    r = client.post(reverse("admin:auth_user_password_change", args=[root.pk]),
                    {"password1": "taken-over-2026", "password2": "taken-over-2026"})
    assert r.status_code in (302, 403, 404)
    root.refresh_from_db()
    assert root.check_password("pw-root-2026")


def test_a_superuser_sees_and_sets_every_field(world):
    root = User.objects.create_superuser("root", "root@acme.test", "pw-root-2026")
    page = _login(root).get(reverse("admin:auth_user_change", args=[world.alice.pk])).content.decode()
    assert 'name="is_superuser"' in page and 'name="groups"' in page


def test_supervisors_cannot_see_api_tokens(world):
    from agents.actions import do_create_api_token

    do_create_api_token(user=world.alice, name="shop")
    client = _login(world.bob)
    assert not world.bob.has_perm("authtoken.view_tokenproxy")
    assert not world.bob.has_perm("agents.view_apitoken")
    assert client.get("/admin/agents/apitoken/").status_code == 403
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 404


def test_the_admin_lists_tokens_without_their_keys_and_revokes_them(world, dana, api_client_for):
    from agents.actions import do_create_api_token
    from agents.models import ApiToken

    token, key = do_create_api_token(user=world.alice, name="shop")
    page = _login(dana).get("/admin/agents/apitoken/").content.decode()
    assert "shop" in page and key not in page and token.prefix in page
    assert key not in str(ApiToken.objects.values_list())  # stored hashed
    r = _login(dana).post(reverse("admin:agents_apitoken_delete", args=[token.pk]), {"post": "yes"})
    assert r.status_code == 302
    assert not ApiToken.objects.exists()


def test_the_seeded_roles_reach_the_admin_as_the_readme_says(world):
    root = User.objects.create_user("root", password="pw-root-2026", is_superuser=True)
    do_set_agent_role(agent=AgentProfile.objects.create(user=root), role="admin")
    root.refresh_from_db()
    assert root.is_staff
    client = Client()
    assert client.login(username="root", password="pw-root-2026")
    assert client.get("/admin/").status_code == 200
    alice = Client()
    assert alice.login(username="alice", password="pw-alice")
    assert alice.get("/admin/").status_code == 302  # agents never see the admin


@pytest.mark.parametrize("model", ["routing.routingrule", "sla.slapolicy", "sla.businesscalendar",
                                   "campaigns.widgetconfig", "conversations.cannedmessage"])
def test_supervisors_edit_routing_sla_widget_and_canned_configuration(world, model):
    app, name = model.split(".")
    world.bob.refresh_from_db()
    bob = User.objects.get(pk=world.bob.pk)  # fresh permission cache
    for action in ("add", "change", "delete"):
        assert bob.has_perm(f"{app}.{action}_{name}"), f"{action} {model}"
    client = _login(bob)
    assert client.get(reverse(f"admin:{app}_{name}_add")).status_code == 200


def test_each_user_creates_and_revokes_their_own_tokens_on_the_profile_page(world, api_client_for):
    from agents.models import ApiToken

    client = _login(world.alice)
    page = client.get(reverse("console:profile"))
    assert page.status_code == 200 and "No tokens" in page.content.decode()
    r = client.post(reverse("console:profile"), {"name": "Shop backend"})
    assert r.status_code == 201
    key = r.context["new_key"]
    assert key in r.content.decode() and r["Cache-Control"].startswith("max-age=0")
    token = ApiToken.objects.get(user=world.alice)
    assert key not in client.get(reverse("console:profile")).content.decode()  # shown once

    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/conversations/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None

    # Someone else's token cannot be revoked from your page; your own can.
    other = ApiToken.objects.create(user=world.charlie, name="x", prefix="oc_x", key_hash="0" * 64)
    assert client.post(reverse("console:revoke_token", args=[other.pk])).status_code == 404
    assert client.post(reverse("console:revoke_token", args=[token.pk])).status_code == 302
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    assert api.get("/api/v1/conversations/").status_code == 401


def test_a_token_needs_a_name(world):
    r = _login(world.alice).post(reverse("console:profile"), {"name": "  "})
    assert r.status_code == 400 and "Give the token a name" in r.content.decode()


def test_an_agent_changes_their_password(world):
    client = _login(world.alice)
    assert client.get("/accounts/password/").status_code == 200
    r = client.post("/accounts/password/", {"old_password": "pw-alice", "new_password1": "Quiet-Harbor-2026",
                                            "new_password2": "Quiet-Harbor-2026"})
    assert r.status_code == 302
    world.alice.refresh_from_db()
    assert world.alice.check_password("Quiet-Harbor-2026")
