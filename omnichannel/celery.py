import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")

app = Celery("omnichannel")


@signals.celeryd_init.connect
@signals.worker_process_init.connect
def _no_connection_pool(**kwargs) -> None:
    """Workers use plain connections: Celery's Django fixup closes a process's pool before and after every
    task (so a pool would be re-opened per task), and a pool must never cross a fork."""
    from django.conf import settings
    from django.db import connections

    for alias, database in settings.DATABASES.items():
        options = database.get("OPTIONS", {})
        if "pool" not in options:
            continue
        conn = connections[alias]
        if alias in getattr(conn, "_connection_pools", {}):  # a worker started inside a process that pooled
            conn.close()
            conn.close_pool()
        del options["pool"]


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic work, defined in one place. Every entry is a short sweep that re-reads
# state from PostgreSQL, so a missed or doubled beat tick is harmless.
app.conf.beat_schedule = {
    # Agents whose console stopped sending heartbeats go offline.
    "presence-sweep": {"task": "routing.tasks.sweep_presence", "schedule": 15.0},
    # SLA warnings and breaches: a sweep over the indexed due times, compared with the database's now().
    "sla-sweep": {"task": "sla.tasks.sweep_sla", "schedule": 5.0},
    # Live-chat offers not accepted in time go to the next agent.
    "routing-offers": {"task": "routing.tasks.expire_offers", "schedule": 5.0},
    # Safety net: conversations waiting in the queue are retried (capacity changes also trigger it at once).
    "routing-drain": {"task": "routing.tasks.drain_queue", "schedule": 15.0},
    # Outbound messages stuck in queued/sending (lost task, crashed worker) are re-driven.
    "outbox-redrive": {"task": "conversations.tasks.redrive_outbound_messages", "schedule": 30.0},
    # Inbound SMS stored by the webhook but not yet processed (lost task, killed worker) are re-driven.
    "twilio-inbound-redrive": {"task": "omnichannel.integrations.twilio_sms.tasks.redrive_twilio_inbound",
                               "schedule": 30.0},
    "twilio-inbound-prune": {"task": "omnichannel.integrations.twilio_sms.tasks.prune_inbound_deliveries",
                             "schedule": 3600.0},
    # Real-time replay log retention.
    "prune-realtime-events": {"task": "omnichannel.tasks.prune_realtime_events", "schedule": 3600.0},
}
