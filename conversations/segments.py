"""Evaluate a segment's membership rule against a contact (pure functions, no writes)."""

from __future__ import annotations

from typing import Any

OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "contains", "in", "exists")
PLAIN_FIELDS = ("name", "email", "phone", "country", "language")


class RuleError(ValueError):
    pass


def validate_rule(rule: Any) -> None:
    """Raise RuleError with a readable message when `rule` is malformed."""
    if rule in (None, {}):
        return
    if not isinstance(rule, dict):
        raise RuleError("A rule is an object with 'match' and 'conditions'")
    if rule.get("match", "all") not in ("all", "any"):
        raise RuleError("'match' must be 'all' or 'any'")
    conditions = rule.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise RuleError("'conditions' must be a non-empty list")
    for cond in conditions:
        if not isinstance(cond, dict) or "field" not in cond or "op" not in cond:
            raise RuleError("Each condition needs 'field', 'op' and usually 'value'")
        field = cond["field"]
        if not (field in PLAIN_FIELDS or (isinstance(field, str) and field.startswith("attributes."))):
            raise RuleError(f"Unknown field {field!r}; use {', '.join(PLAIN_FIELDS)} or attributes.<key>")
        if cond["op"] not in OPS:
            raise RuleError(f"Unknown op {cond['op']!r}; use one of {', '.join(OPS)}")


def _value_of(contact, field: str) -> Any:
    if field.startswith("attributes."):
        current: Any = contact.custom_attributes or {}
        for part in field.split(".")[1:]:
            if not isinstance(current, dict) or part not in current:
                return None
            current = current[part]
        return current
    return getattr(contact, field, None)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "exists":
        return actual not in (None, "")
    if actual is None:
        return False
    try:
        if op == "eq":
            return str(actual).lower() == str(expected).lower()
        if op == "neq":
            return str(actual).lower() != str(expected).lower()
        if op in ("gt", "gte", "lt", "lte"):
            a, b = float(actual), float(expected)
            return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
        if op == "contains":
            return str(expected).lower() in str(actual).lower()
        if op == "in":
            return str(actual).lower() in {str(v).lower() for v in (expected or [])}
    except (TypeError, ValueError):
        return False
    return False


def matches(rule: dict | None, contact) -> bool:
    if not rule:
        return False
    try:
        validate_rule(rule)
    except RuleError:
        return False
    results = (_compare(_value_of(contact, c["field"]), c["op"], c.get("value")) for c in rule["conditions"])
    return all(results) if rule.get("match", "all") == "all" else any(results)
