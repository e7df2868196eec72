from django.apps import AppConfig


class SlaConfig(AppConfig):
    name = "sla"

    def ready(self) -> None:
        from . import handlers  # importing models and actions waits for the app registry

        handlers.register()
