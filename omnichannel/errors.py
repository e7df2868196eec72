"""Errors every layer shares: actions, selectors, transports, views and the API all raise or catch these.

- ``ActionError``: bad input or a forbidden state change; its message is shown to the user (a 4xx, a form
  error or a websocket error frame), never a 500.
- ``NotFound``: an object that does not exist *or* that the user may not see (the same error for both, so
  nobody learns which ids exist).
- ``TransportError``: a provider send that failed; ``permanent`` ones are not retried.
"""

from __future__ import annotations


class ActionError(Exception):
    """Bad input or a forbidden state change; the message is shown to the user (4xx)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(Exception):
    """Raised for objects that do not exist *or* that the user may not see (same error for both)."""


class TransportError(Exception):
    """A failed send. `permanent` errors are not retried (bad address, 4xx, no transport)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
