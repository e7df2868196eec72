"""Form fields shared by the admin and the console."""

from __future__ import annotations

import json
import math
from typing import Any

from django import forms
from django.forms.fields import InvalidJSONInput

MAX_JSON_DEPTH = 32


def json_value_error(value: Any) -> str | None:
    """Why PostgreSQL's jsonb (or the database) cannot store `value`, or None: NaN and infinities, NUL
    characters and lone surrogates, anything nested deeper than MAX_JSON_DEPTH. Iterative: no recursion."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested more than {MAX_JSON_DEPTH} levels deep"
        if isinstance(item, float) and not math.isfinite(item):
            return "NaN and Infinity are not JSON numbers"
        if isinstance(item, str):
            if "\x00" in item:
                return "text may not contain NUL characters"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "text holds an invalid character (a lone surrogate)"
        elif isinstance(item, dict):
            stack.extend((key, depth + 1) for key in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None


class SafeJSONField(forms.JSONField):
    """forms.JSONField whose every bad input is a form error: JSON nested past the parser's limit (a
    RecursionError, a 500 before), numbers past Python's 4,300 digits (a ValueError), values the database
    refuses (NaN, NUL, lone surrogates), and ``null`` for a model field with a default (its column is NOT NULL:
    an IntegrityError before). Such a field left empty takes its default ({} or [])."""

    def to_python(self, value: Any) -> Any:
        has_default = callable(self.initial)  # the model field's default (dict, list): NOT NULL in this project
        if has_default and value in self.empty_values:
            return self.initial()
        try:
            converted = super().to_python(value)
        except RecursionError:
            raise forms.ValidationError("Enter a valid JSON: nested too deeply.", code="invalid") from None
        except ValueError:  # int("1" + 5000 zeros): Python's limit on digits
            raise forms.ValidationError("Enter a valid JSON: a number has too many digits.", code="invalid") from None
        if isinstance(converted, InvalidJSONInput):
            return converted
        if converted is None and has_default:
            raise forms.ValidationError("Enter a valid JSON: null is not allowed here; leave the field empty for "
                                        "none.", code="invalid")
        error = json_value_error(converted)
        if error:
            raise forms.ValidationError(f"Enter a valid JSON: {error}.", code="invalid")
        return converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        # A refused input is shown back as typed (its value re-encoded could not even be rendered: a lone
        # surrogate is no UTF-8).
        try:
            value = super().bound_data(data, initial)
        except (RecursionError, ValueError):
            return InvalidJSONInput(data)
        if not isinstance(value, InvalidJSONInput) and data is not None and json_value_error(value):
            return InvalidJSONInput(data)
        return value

    def prepare_value(self, value: Any) -> Any:
        try:
            return super().prepare_value(value)
        except (RecursionError, ValueError):
            return json.dumps(None) if value is None else str(value)[:10000]
