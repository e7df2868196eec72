"""MMS media download (only from Twilio's media hosts, or the configured stand-in, with a size limit). Inbound
messages themselves are processed by the generic conversations.tasks.process_inbound_delivery."""

from __future__ import annotations

from urllib.parse import urlparse

import requests
from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from conversations.actions import message_event, system_line
from conversations.models import Attachment, Message
from omnichannel.realtime import inbox_stream, publish

MAX_MEDIA_BYTES = 5 * 1024 * 1024
TWILIO_MEDIA_HOSTS = ("api.twilio.com", ".twiliocdn.com", ".twilio.com")


def media_host_allowed(url: str) -> bool:
    parsed = urlparse(url)
    host = (parsed.hostname or "").lower()
    if parsed.scheme == "https" and (host == "api.twilio.com" or host.endswith(TWILIO_MEDIA_HOSTS[1:])):
        return True
    fake = urlparse(settings.TWILIO_API_BASE_URL)
    return host == (fake.hostname or "").lower() and parsed.port == fake.port and host != "api.twilio.com"


def _get(url: str, auth: tuple[str, str]) -> tuple[bytes, str]:
    # Follow redirects by hand so every hop is checked (Twilio redirects to its CDN).
    for _ in range(3):
        if not media_host_allowed(url):
            raise ValueError(f"refusing media from {urlparse(url).hostname}")
        response = requests.get(url, auth=auth, timeout=15, stream=True, allow_redirects=False)
        if response.is_redirect:
            url = response.headers["Location"]
            auth = None  # the CDN URL is pre-signed
            continue
        response.raise_for_status()
        data = b""
        for chunk in response.iter_content(64 * 1024):
            data += chunk
            if len(data) > MAX_MEDIA_BYTES:
                raise ValueError("media larger than 5 MB")
        return data, response.headers.get("Content-Type", "application/octet-stream")
    raise ValueError("too many redirects")


@shared_task(autoretry_for=(requests.RequestException,), retry_backoff=True, max_retries=5)
def download_twilio_media(message_id: int, media: list[dict]) -> int:
    """Store an MMS's media as the message's attachments. Media that is refused (a host that is not
    Twilio's, over 5 MB, too many redirects) is not stored, and a system line in the conversation says so
    (once, with each reason), so the agent knows the customer sent more than they see."""
    message = Message.objects.select_related("inbox", "conversation").get(pk=message_id)
    auth = ((message.inbox.settings or {}).get("account_sid", ""), message.inbox.secret)
    saved = 0
    refused = []
    for index, item in enumerate(media):
        if Attachment.objects.filter(message=message, filename__startswith=f"mms-{index}.").exists():
            continue  # idempotent on retry
        try:
            data, content_type = _get(item["url"], auth)
        except ValueError as exc:
            refused.append(f"file {index + 1}: {exc}")
            continue
        content_type = (item.get("content_type") or content_type).split(";")[0][:100]
        ext = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}.get(content_type, "bin")
        att = Attachment(message=message, filename=f"mms-{index}.{ext}", content_type=content_type, size=len(data))
        att.file.save(att.filename, ContentFile(data), save=False)
        att.save()
        saved += 1
    if saved:
        with transaction.atomic():
            publish(message_event(message, op="attachments"), streams=[inbox_stream(message.inbox_id)])
    if refused:
        with transaction.atomic():
            locked = Message.objects.select_for_update().get(pk=message_id)
            sms_meta = (locked.meta or {}).get("sms") or {}
            if not sms_meta.get("media_refused"):
                locked.meta = {**(locked.meta or {}), "sms": {**sms_meta, "media_refused": refused}}
                locked.save(update_fields=["meta"])
                system_line(message.conversation, "The customer's MMS had attachments that were not kept ("
                            + "; ".join(refused) + ").")
    return saved
