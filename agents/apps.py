from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from .actions import sync_role_groups  # after the app registry: actions import the models

        # The role groups' permissions follow the code on every migrate (a new version may change them).
        post_migrate.connect(sync_role_groups, sender=self, dispatch_uid="agents.sync_role_groups")
