from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self) -> None:
        from . import handlers, signals  # importing models and actions waits for the app registry

        signals.connect()
        handlers.register()
