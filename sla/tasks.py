import json

import requests
from celery import shared_task
from django.conf import settings

from omnichannel.errors import TransportError
from omnichannel.outbound_webhooks import check_webhook_url

from .actions import do_sweep_sla


@shared_task
def sweep_sla() -> dict:
    return do_sweep_sla()


@shared_task(autoretry_for=(requests.RequestException,), retry_backoff=True, max_retries=5)
def call_sla_webhook(url: str, payload: dict) -> int:
    """An escalation's outbound webhook (same SSRF guard as the API channel's webhooks)."""
    try:
        check_webhook_url(url)
    except TransportError:
        return 0
    response = requests.post(url, data=json.dumps(payload), headers={"Content-Type": "application/json"},
                             timeout=settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False)
    if response.status_code >= 500:
        response.raise_for_status()
    return response.status_code
