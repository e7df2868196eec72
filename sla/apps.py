from django.apps import AppConfig


class SlaConfig(AppConfig):
    name = "sla"

    def ready(self) -> None:
        from . import handlers  # after the app registry: handlers import models and actions

        handlers.register()
