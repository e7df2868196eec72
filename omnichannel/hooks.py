"""An explicit hook registry (Wagtail's ``hooks`` and Zulip's explicit calls, not Django signals).

A lower layer declares a ``Hook`` at a point in one of its actions; a higher layer (an engine such as routing
or SLA, later the bot) registers a handler for it in its ``AppConfig.ready()``. The lower layer never imports
the higher one, every point is greppable (``hooks.<name>(`` where it is called, ``<name>.register(`` where it
is handled), handlers run in registration order, which is ``INSTALLED_APPS`` order, and a test can ask which
handlers a point has (``Hook.handlers``). A point that asks the engines a question instead of telling them
something is called with ``collect``, which returns each handler's answer (Wagtail's ``get_hooks``).

Handlers run synchronously, inside the caller's transaction and under the locks it holds (each point's
docstring says which); a handler that must act after commit enqueues its work with ``delay_on_commit`` or
``transaction.on_commit``. A handler's exception propagates to the action: the transaction rolls back as if
the action itself had failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Hook:
    """A named extension point. Call it with the keyword arguments its docstring documents."""

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        self._handlers: list[Callable[..., Any]] = []

    def register(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Add `handler` (idempotent: an app whose ``ready()`` runs twice registers once). Usable as a decorator."""
        if handler not in self._handlers:
            self._handlers.append(handler)
        return handler

    @property
    def handlers(self) -> tuple[Callable[..., Any], ...]:
        return tuple(self._handlers)

    def __call__(self, **kwargs: Any) -> None:
        for handler in self._handlers:
            handler(**kwargs)

    def collect(self, **kwargs: Any) -> list[Any]:
        """Call every handler, as calling the point does, and return their results in order."""
        return [handler(**kwargs) for handler in self._handlers]

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {len(self._handlers)} handler(s)>"
