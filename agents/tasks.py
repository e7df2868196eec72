"""Celery entry points for agents. Each re-reads state from the database, so a duplicate run is harmless."""

from celery import shared_task

from .actions import do_sweep_presence


@shared_task
def sweep_presence() -> int:
    return do_sweep_presence()
