from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .integrations.twilio_sms.tasks import download_twilio_media  # noqa: F401  (registers the task)
from .models import RealtimeEvent


@shared_task
def prune_realtime_events() -> int:
    """Drop replay-log rows older than the retention; a console older than that reloads."""
    cutoff = timezone.now() - timedelta(hours=settings.REALTIME_EVENT_RETENTION_HOURS)
    deleted, _ = RealtimeEvent.objects.filter(created_at__lt=cutoff).delete()
    return deleted
