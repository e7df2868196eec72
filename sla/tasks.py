import json
import uuid

import requests
from celery import shared_task
from django.conf import settings

from omnichannel.errors import TransportError
from omnichannel.outbound_webhooks import check_webhook_url, signed_headers

from .actions import do_sweep_sla


@shared_task
def sweep_sla() -> dict:
    return do_sweep_sla()


@shared_task(autoretry_for=(requests.RequestException,), retry_backoff=True, max_retries=5)
def call_sla_webhook(url: str, payload: dict, delivery: str = "") -> int:
    """An escalation's outbound webhook: the API channel's SSRF guard and signature (omnichannel.outbound_webhooks),
    signed with SLA_WEBHOOK_SECRET; `delivery` is the same on every retry, for the receiver to dedupe on."""
    try:
        check_webhook_url(url)
    except TransportError:
        return 0
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = signed_headers(settings.SLA_WEBHOOK_SECRET, body, event=str(payload.get("event", "sla")),
                             delivery=delivery or str(uuid.uuid4()))
    response = requests.post(url, data=body, headers=headers,
                             timeout=settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False)
    if response.status_code >= 500:
        response.raise_for_status()
    return response.status_code
