"""SLA escalation webhooks are signed like the API channel's (issue 14)."""

from __future__ import annotations

import json

import pytest

from omnichannel.outbound_webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from sla.tasks import call_sla_webhook
from tests.integrations.api.test_transport import FakeIntegration


@pytest.fixture
def receiver():
    f = FakeIntegration()
    yield f
    f.close()


def test_an_escalation_webhook_is_signed_with_the_sla_secret(receiver, settings):
    settings.SLA_WEBHOOK_SECRET = "sla-secret-2026"
    payload = {"event": "sla.breach", "conversation_id": 7, "metric": "first_response", "policy": "VIP"}
    assert call_sla_webhook(receiver.url, payload, delivery="sla-3-breach") == 200
    request = receiver.requests[0]
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert json.loads(request["body"]) == payload
    assert headers["x-omnichannel-event"] == "sla.breach" and headers["x-omnichannel-delivery"] == "sla-3-breach"
    assert verify("sla-secret-2026", headers[TIMESTAMP_HEADER.lower()], request["body"],
                  headers[SIGNATURE_HEADER.lower()])
    assert not verify("another-secret", headers[TIMESTAMP_HEADER.lower()], request["body"],
                      headers[SIGNATURE_HEADER.lower()])


def test_an_escalation_webhook_to_a_private_address_is_not_called(settings):
    settings.OUTBOUND_WEBHOOK_ALLOWED_PRIVATE_HOSTS = []
    assert call_sla_webhook("http://169.254.169.254/latest", {"event": "sla.breach"}) == 0
