"""Issue 14: a Content-Security-Policy on the product's pages, HSTS and the SSL redirect from the environment, and
`manage.py check --deploy` clean under production-like settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _policy(response) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response}"
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@pytest.mark.django_db
def test_product_pages_forbid_inline_script(client, world, settings):
    from conversations.models import ChannelKind, Inbox

    settings.DEMO_MODE = True
    Inbox.objects.create(name="Demo shop", kind=ChannelKind.API, settings={"demo": True})
    pages = ["/accounts/login/"]
    client.force_login(world.bob)  # a supervisor: the reports too
    pages += ["/console/", "/console/canned/", "/reports/sla/", "/reports/routing/", "/demo/", "/api/v1/conversations/",
              "/console/profile/", "/accounts/password/"]
    for url in pages:
        r = client.get(url)
        assert r.status_code == 200, url
        policy = _policy(r)
        assert policy["script-src"] == ["'self'"], url  # no 'unsafe-inline', no 'unsafe-eval'
        assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'self'"], url
        assert policy["frame-ancestors"] == ["'none'"] and policy["form-action"] == ["'self'"], url
        assert "'unsafe-inline'" not in policy["default-src"], url


@pytest.mark.django_db
def test_admin_and_widget_have_their_own_policy(client, world, settings):
    from campaigns.models import WidgetConfig
    from conversations.models import ChannelKind, Inbox

    client.force_login(world.bob)
    inbox = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    WidgetConfig.objects.create(inbox=inbox)
    admin = _policy(client.get("/admin/"))
    assert admin["script-src"] == ["'self'"] and admin["frame-ancestors"] == ["'none'"]
    popup = client.get(f"/widget/popup/{inbox.public_token}/")
    widget = _policy(popup)
    assert widget["script-src"] == ["'self'"] and "frame-ancestors" not in widget  # a customer's site may frame it
    # widget.js talks to PUBLIC_BASE_URL (HTTP and websocket), and shows agents' avatars from anywhere.
    assert {"'self'", settings.PUBLIC_BASE_URL, settings.PUBLIC_BASE_URL.replace("http", "ws", 1)} <= set(
        widget["connect-src"])
    assert "*" in widget["img-src"]
    # Redoc's search runs in a blob: worker; no other page may start one.
    redoc = _policy(client.get("/api/v1/redoc/"))
    assert redoc["worker-src"] == ["'self'", "blob:"] and redoc["script-src"] == ["'self'"]
    assert "worker-src" not in _policy(client.get("/console/"))


def test_every_template_and_page_script_is_a_file():
    """No inline <script> with code (JSON data blocks are fine) and no on*= handler in our templates."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
    handler = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
    offenders = []
    # The templates, and the modules that write HTML themselves (the admin's, the console's fragments).
    for path in [*(ROOT / "templates").rglob("*.html"), *ROOT.glob("*/admin.py"), *ROOT.glob("*/*_html.py"),
                 *ROOT.glob("*/panel.py")]:
        if ".venv" in path.parts:
            continue
        text = path.read_text()
        if inline.search(text) or handler.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _deploy_check(**env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DJANGO_SETTINGS"))}
    base.update({
        "DJANGO_SETTINGS_MODULE": "omnichannel.settings", "OMNICHANNEL_TESTING": "False", "DEBUG": "False",
        "SECRET_KEY": "k3Qz-" + "a8Xq#pL2vN7mR4tW9yB6cE1fH5jK0sD3gU" * 2,
        "PUBLIC_BASE_URL": "https://support.example.com", "ALLOWED_HOSTS": "support.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://support.example.com",
    })
    base.update(env)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          env=base, capture_output=True, text=True, cwd=ROOT, timeout=120)


PRODUCTION = {"SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "True",
              "SECURE_HSTS_PRELOAD": "True", "SECURE_SSL_REDIRECT": "True", "BEHIND_PROXY": "True"}


def test_deploy_check_is_clean_with_production_settings():
    r = _deploy_check(**PRODUCTION)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "System check identified no issues (0 silenced)." in r.stdout, r.stdout + r.stderr


def test_deploy_check_names_what_is_missing():
    r = _deploy_check(**{**PRODUCTION, "SECURE_HSTS_SECONDS": "0", "SECURE_SSL_REDIRECT": "False"})
    assert r.returncode != 0
    assert "security.W004" in r.stderr + r.stdout and "security.W008" in r.stderr + r.stdout


def test_hsts_and_ssl_redirect_come_from_the_environment():
    code = ("import omnichannel.settings as s; print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
            "s.SECURE_HSTS_PRELOAD, s.SECURE_SSL_REDIRECT)")
    env = {**os.environ, **PRODUCTION}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.split()[-4:] == ["31536000", "True", "True", "True"], r.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.split()[-4:] == ["0", "False", "False", "False"], r.stderr


@pytest.mark.django_db
def test_hsts_header_and_redirect(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_SSL_REDIRECT = True
    r = client.get("/accounts/login/")
    assert r.status_code == 301 and r["Location"].startswith("https://")
    r = client.get("/accounts/login/", secure=True)
    assert r.status_code == 200
    assert r["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert client.get("/healthz").status_code == 200  # a load balancer's plain-http health check
