"""omnichannel.apps: the heap is frozen (gc.freeze) once per process, after the first request."""

from __future__ import annotations

import pytest
from django.core.signals import request_finished

from omnichannel import apps

pytestmark = pytest.mark.django_db


def test_first_request_freezes_the_heap_once(client, monkeypatch):
    calls = []
    monkeypatch.setattr(apps.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(apps.gc, "freeze", lambda: calls.append("freeze"))
    request_finished.connect(apps._freeze_after_first_request)  # as ready() does (a no-op if still connected)
    try:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz").status_code == 200
    finally:
        request_finished.disconnect(apps._freeze_after_first_request)
    assert calls == ["collect", "freeze"]
