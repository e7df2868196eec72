"""Agents' loads: the check of the loads the triggers keep (`do_reconcile_loads`) and the live chats offered
to an agent (`chats_offered`, the core's `chats_held` hook point). The load SQL itself is in routing.queries
(`load_sql`, `count_load_sql`)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Subquery
from django.db.models.functions import Coalesce

from conversations import channels

from ..models import QueueEntry
from ..queries import reconcile_loads_sql

logger = logging.getLogger(__name__)


def do_reconcile_loads() -> int:
    """Check the agents' loads the triggers keep against the counts and correct them: how many agents' loads
    were wrong, which should always be 0 (logged as an error otherwise). Raw SQL: the routing_reconcile_loads()
    function of migration 0005 does the work."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(*reconcile_loads_sql())
        corrected = cursor.fetchone()[0]
    if corrected:
        logger.error("routing: corrected the load of %d agents (the load triggers missed a change)", corrected)
    return corrected


def chats_offered(*, agent: Any, exclude: int | None = None) -> Any:
    """The live chats offered to the agent row `agent` (an expression for its id) and waiting for their accept,
    as a query expression (an integer); `exclude`: a conversation id not counted."""
    offers = QueueEntry.objects.filter(offered_to_id=agent, state=QueueEntry.State.OFFERED,
                                       inbox__kind__in=channels.live_kinds())
    if exclude is not None:
        offers = offers.exclude(conversation_id=exclude)
    return Coalesce(Subquery(offers.order_by().values("offered_to_id").annotate(n=Count("id")).values("n")), 0)
