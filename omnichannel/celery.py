import os

from celery import Celery, signals
from django.conf import settings
from django.db import close_old_connections, connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")

app = Celery("omnichannel")


@signals.celeryd_init.connect
@signals.worker_process_init.connect
def _worker_connections(signal=None, **kwargs) -> None:
    """Worker processes keep one plain connection each, reused from task to task.

    No pool: Celery's Django fixup closes a process's pool around every task (so it would be re-opened per
    task), and a pool must never cross a fork. Persistent instead of a connect per task (~5 ms, and a new
    backend with cold catalog caches: a routing decision measured 47 ms on a new connection, 20 ms on a
    warm one): a prefork child runs one task at a time in one thread, so one connection serves it, and
    ``close_old_connections`` around each task drops it when it is broken or older than
    ``WORKER_DB_CONN_MAX_AGE``, as Django does between requests.
    """
    global _in_worker
    # A worker process (`celery worker`: celeryd_init, and its forked children). A solo-pool worker embedded in
    # another process (the tests' worker thread) sends worker_process_init only: that process keeps its settings.
    _in_worker = _in_worker or signal is signals.celeryd_init
    for alias, database in settings.DATABASES.items():
        options = database.get("OPTIONS", {})
        if "pool" in options:
            conn = connections[alias]
            if alias in getattr(conn, "_connection_pools", {}):  # a worker started inside a process that pooled
                conn.close()
                conn.close_pool()
            del options["pool"]
        if _in_worker:
            database["CONN_MAX_AGE"] = settings.WORKER_DB_CONN_MAX_AGE


_in_worker = False


@signals.worker_process_init.connect
def _send_in_background(**kwargs) -> None:
    """A prefork pool process of a `celery worker` hands its after-commit realtime frames to a sender thread of
    its own (omnichannel.realtime.send_in_background): a task that committed goes on without waiting for Redis.
    Django is set up by then (the worker's parent did it before forking its pool)."""
    if _in_worker:
        # after django.setup(): omnichannel/__init__ imports this module before the settings and the apps
        from omnichannel import realtime

        realtime.send_in_background()


@signals.worker_process_shutdown.connect
def _flush_realtime(**kwargs) -> None:
    if _in_worker:
        # after django.setup(): omnichannel/__init__ imports this module before the settings and the apps
        from omnichannel import realtime

        realtime.flush_background()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(task=None, **kwargs) -> None:
    if getattr(getattr(task, "request", None), "is_eager", False):
        return  # eager calls run inside the caller's transaction (and the tests' atomic blocks)
    if _in_worker:
        close_old_connections()
        return
    # A worker embedded in another process (celery.contrib.testing's worker thread): no celeryd_init, so its
    # thread's connections are closed around each task, as Celery's fixup would without CELERY_DB_REUSE_MAX.
    for conn in connections.all(initialized_only=True):
        conn.close()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic work, defined in one place. Every entry is a short sweep that re-reads
# state from PostgreSQL, so a missed or doubled beat tick is harmless.
app.conf.beat_schedule = {
    # Agents whose console stopped sending heartbeats go offline.
    "presence-sweep": {"task": "agents.tasks.sweep_presence", "schedule": 15.0},
    # SLA warnings and breaches: a sweep over the indexed due times, compared with the database's now().
    "sla-sweep": {"task": "sla.tasks.sweep_sla", "schedule": 5.0},
    # Live-chat offers not accepted in time go to the next agent.
    "routing-offers": {"task": "routing.tasks.expire_offers", "schedule": 5.0},
    # Safety net: conversations waiting in the queue are retried (capacity changes also trigger it at once).
    "routing-drain": {"task": "routing.tasks.drain_queue", "schedule": 15.0},
    # Agents' loads kept by triggers (routing.models.AgentLoad) checked against the counts; drift is logged.
    "routing-loads": {"task": "routing.tasks.reconcile_loads", "schedule": 3600.0},
    # Outbound messages stuck in queued/sending (lost task, crashed worker) are re-driven.
    "outbox-redrive": {"task": "conversations.tasks.redrive_outbound_messages", "schedule": 30.0},
    # Inbound deliveries of every channel stored by a webhook but not yet processed (lost task, killed worker)
    # are re-driven; processed ones are pruned after a week.
    "inbound-redrive": {"task": "conversations.tasks.redrive_inbound_deliveries", "schedule": 30.0},
    "inbound-prune": {"task": "conversations.tasks.prune_inbound_deliveries", "schedule": 3600.0},
    # Real-time replay log retention.
    "prune-realtime-events": {"task": "omnichannel.tasks.prune_realtime_events", "schedule": 3600.0},
}
