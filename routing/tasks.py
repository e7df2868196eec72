from celery import shared_task


@shared_task
def sweep_presence() -> int:
    from .actions import do_sweep_presence

    return do_sweep_presence()
