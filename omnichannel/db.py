"""Raw-SQL helpers for the few hot paths that read or write rows without the ORM (see docs/performance.md).

``columns`` and ``from_row`` are the one way to turn a raw row into a model instance: the columns in the
model's field order, converted exactly as the ORM converts them (JSON, dates and the like), so an instance
read here is indistinguishable from one ``Model.objects.get`` returns. ``sql_literal`` writes a code constant
(a status or a channel kind) into a statement.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.db import connection


@functools.cache
def columns(model, alias: str) -> str:
    """The model's concrete columns, qualified by `alias`, in the order ``from_row`` reads them."""
    return ", ".join(f'{alias}."{f.column}"' for f in model._meta.concrete_fields)


def from_row(model, values: tuple | list):
    """A model instance from its concrete columns as read by raw SQL (in ``columns``' order), converted as the
    ORM converts them (JSON and the like)."""
    attnames, converters = _converters(model)
    converted = list(values)
    for index, col, functions in converters:
        value = converted[index]
        for converter in functions:
            value = converter(value, col, connection)
        converted[index] = value
    return model.from_db(connection.alias, attnames, converted)


@functools.cache
def _converters(model) -> tuple[list[str], list[tuple[int, Any, list]]]:
    """(attnames, [(position, column, converter functions)] for the fields that have converters), per model."""
    fields = model._meta.concrete_fields
    converters = []
    for index, field in enumerate(fields):
        col = field.get_col(model._meta.db_table)
        functions = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
        if functions:
            converters.append((index, col, functions))
    return [f.attname for f in fields], converters


def sql_literal(value: str) -> str:
    """A code constant (a status or channel kind) as an SQL literal. Constants are written into the statement,
    not bound: a prepared statement's generic plan then knows them (bound, the plan guessed at them and picked
    a scan of a whole inbox's conversations per agent, 40 ms for a large team)."""
    if not re.fullmatch(r"[a-z_]+", value):
        raise ValueError(f"not a code constant: {value!r}")
    return f"'{value}'"
