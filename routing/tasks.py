"""Celery entry points for routing. Each re-reads state from PostgreSQL, so a duplicate run is harmless.

Each task imports its action inside its body: a cycle, routing.actions imports this module (its actions
enqueue these tasks with delay_on_commit)."""

from datetime import datetime

from celery import shared_task
from django.db import OperationalError


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def route_conversation(conversation_id: int) -> str:
    """Idempotent (a routed conversation is skipped); a deadlock between two routings is retried."""
    from .actions import do_route_conversation  # a cycle: routing.actions imports this module

    return do_route_conversation(conversation_id=conversation_id).outcome


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def recheck_reopened(conversation_id: int, solved_at: str | None = None) -> str:
    """A solved conversation the customer reopened stays with its agent when available, else is routed."""
    from .actions import do_recheck_reopened  # a cycle: routing.actions imports this module

    return do_recheck_reopened(conversation_id=conversation_id,
                               solved_at=datetime.fromisoformat(solved_at) if solved_at else None)


@shared_task
def drain_queue() -> int:
    from .actions import do_drain_queue  # a cycle: routing.actions imports this module

    return do_drain_queue()


@shared_task
def expire_offers() -> int:
    from .actions import do_expire_offers  # a cycle: routing.actions imports this module

    return do_expire_offers()


@shared_task
def reconcile_loads() -> int:
    from .actions import do_reconcile_loads  # a cycle: routing.actions imports this module

    return do_reconcile_loads()
