"""Errors every layer shares: actions, selectors, transports, views and the API all raise or catch these.

- ``ActionError``: bad input or a forbidden state change; its message is shown to the user (a 4xx, a form
  error or a websocket error frame), never a 500.
- ``NotFound``: an object that does not exist *or* that the user may not see (the same error for both, so
  nobody learns which ids exist).
- ``TransportError``: a provider send that failed; ``permanent`` ones are not retried.

And the checks of text for what PostgreSQL cannot store (a NUL character) or UTF-8 cannot encode (a lone
surrogate such as JSON's ``"\\ud800"``): ``check_text`` refuses it with an ``ActionError`` (what an agent, an
admin or a client program typed: they can fix it), ``check_json`` does so for every string of a JSON value, and
``clean_text`` drops it (free text a customer's browser sent).
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


def _storable(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def check_text(value: str, *, field: str | None = None, label: str = "Text") -> str:
    """`value`, or an ActionError naming `label` when it holds a NUL character or a lone surrogate."""
    if isinstance(value, str) and not _storable(value):
        raise ActionError(f"{label} cannot contain NUL characters or invalid Unicode", field=field)
    return value


def clean_text(value: str) -> str:
    """`value` without NUL characters, lone surrogates replaced by "?"."""
    if _storable(value):
        return value
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def check_json(value, *, field: str | None = None, label: str = "The value"):
    """check_text for every string (keys too) of a JSON value: jsonb cannot hold NUL either."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(item, field=field, label=label)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return value
