"""Celery entry points for agents. Each re-reads state from the database, so a duplicate run is harmless."""

from celery import shared_task


@shared_task
def sweep_presence() -> int:
    from .actions import do_sweep_presence  # importing actions (models) waits for the app registry

    return do_sweep_presence()
