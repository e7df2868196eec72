"""Authentication backend: Django's ModelBackend, loading the user's agent profile with the user.

Every console request needs both (the agent profile decides what the user may see), so the session's user
is read with its profile in one statement instead of two.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class AgentModelBackend(ModelBackend):
    def get_user(self, user_id):
        UserModel = get_user_model()
        try:
            # A user without a profile gets the relation cached as missing (user.agent raises DoesNotExist).
            user = UserModel._default_manager.select_related("agent").get(pk=user_id)
        except UserModel.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
