"""The one condition language (conversations/conditions.py): one fixture table run through every path that
checks a condition (check, the compiled tester, evaluate, a segment's rule), the validator's messages, the
explanation format, and the admin forms that use the validator."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agents.models import Team
from conversations.conditions import (
    CONTACT,
    CONVERSATION,
    FIELDS,
    NO_CONDITIONS,
    OPERATORS,
    ConditionError,
    ContactFacts,
    _tester,
    check,
    compile_rule,
    evaluate,
    evaluate_compiled,
    field_names,
    field_spec,
    segment_matches,
    validate_conditions,
    validate_rule,
)
from conversations.models import Contact, Segment
from routing.models import RoutingRule
from sla.models import SlaPolicy

ALWAYS_OPEN = {"tz": "UTC", "days": {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                                         "sun")}}
MISSING = object()  # the fact is not there at all (an attribute the contact does not have)

# field, op, expected, actual -> result. Every row is a valid condition (the validator accepts it).
TABLE = [
    # eq / neq: text case-insensitively, other values as typed
    ("attributes.plan", "eq", "Gold", "gold", True),
    ("attributes.plan", "eq", "gold", "silver", False),
    ("attributes.plan", "eq", "gold", MISSING, False),
    ("attributes.plan", "eq", "gold", None, False),
    ("attributes.spend_tier", "eq", 5, 5, True),
    ("attributes.spend_tier", "eq", 5, 5.0, True),
    ("attributes.spend_tier", "eq", "5", 5, False),  # a number is not its text (segments used to say yes)
    ("attributes.beta", "eq", True, True, True),
    ("attributes.beta", "eq", "true", True, False),
    ("attributes.plan", "neq", "gold", "silver", True),
    ("attributes.plan", "neq", "gold", "GOLD", False),
    ("attributes.plan", "neq", "gold", MISSING, True),  # missing is not gold (segments used to say no)
    ("attributes.plan", "neq", "gold", None, True),
    ("country", "eq", "us", "US", True),
    ("name", "eq", "ann", "", False),
    ("name", "neq", "ann", "", True),
    # numbers: text converted, anything else does not match
    ("attributes.spend_tier", "gt", 5, 6, True),
    ("attributes.spend_tier", "gt", 5, 5, False),
    ("attributes.spend_tier", "gt", "5", "6", True),
    ("attributes.spend_tier", "gte", 5, 5, True),
    ("attributes.spend_tier", "gte", 5, 4.5, False),
    ("attributes.spend_tier", "lt", 5, 4, True),
    ("attributes.spend_tier", "lt", 5, 5, False),
    ("attributes.spend_tier", "lte", 5, 5, True),
    ("attributes.spend_tier", "lte", 5.5, "6", False),
    ("attributes.spend_tier", "gt", 5, "lots", False),
    ("attributes.spend_tier", "gt", 5, MISSING, False),
    ("attributes.spend_tier", "gt", 5, 10**400, False),  # too big for a float: no match, no error
    ("attributes.spend_tier", "gte", 0, {"a": 1}, False),
    ("attributes.spend_tier", "gte", 1, [0, 2], True),  # a list: any element
    # text
    ("name", "contains", "ANN", "Joanna Smith", True),
    ("name", "contains", "bob", "Joanna Smith", False),
    ("email", "contains", "@example.com", "a@EXAMPLE.com", True),
    ("attributes.note", "contains", "x", MISSING, False),
    ("phone", "startswith", ["+33", "+44"], "+447700900123", True),
    ("phone", "startswith", "+1", "+33612345678", False),
    ("attributes.note", "any_of", ["refund", "late"], "Order LATE again", True),
    ("attributes.note", "any_of", ["refund", "late"], "Where is it?", False),
    ("attributes.note", "any_of", "late", MISSING, False),
    # lists of values
    ("country", "in", ["fr", "de"], "FR", True),
    ("country", "in", ["fr", "de"], "US", False),
    ("country", "in", "us", "US", True),  # one value is a list of one
    ("attributes.plan", "in", ["gold"], MISSING, False),
    ("attributes.spend_tier", "in", [5, 6], 5, True),
    ("attributes.spend_tier", "in", ["5"], 5, False),
    ("country", "not_in", ["fr"], "US", True),
    ("country", "not_in", ["fr"], "fr", False),
    ("attributes.plan", "not_in", ["gold"], MISSING, True),
    # list facts (an attribute holding a list; a conversation's segments and tags)
    ("attributes.tags", "eq", "vip", ["new", "VIP"], True),
    ("attributes.tags", "eq", "vip", ["new"], False),
    ("attributes.tags", "neq", "vip", ["vip", "new"], True),  # some element is not vip
    ("attributes.tags", "in", ["vip", "gold"], ["new", "Gold"], True),
    ("attributes.tags", "not_in", ["vip"], ["new", "VIP"], False),
    ("attributes.tags", "not_in", ["vip"], ["new"], True),
    ("attributes.tags", "contains", "ip", ["new", "VIP"], True),
    # exists
    ("email", "exists", None, "a@example.com", True),
    ("email", "exists", None, "", False),
    ("attributes.beta", "exists", None, False, False),
    ("attributes.beta", "exists", None, 0, False),
    ("attributes.beta", "exists", None, [], False),
    ("attributes.beta", "exists", None, MISSING, False),
    ("attributes.beta", "exists", None, "no", True),
    # within: the clock, not a fact (conversations only)
    ("business_hours", "within", ALWAYS_OPEN, None, True),
]


class StubFacts:
    """Facts holding one value: what evaluate and evaluate_compiled read."""

    def __init__(self, field: str, actual):
        self.field, self.actual = field, actual

    def get(self, name: str):
        return None if self.actual is MISSING else self.actual


def _contact(field: str, actual) -> Contact:
    contact = Contact(name="", email="", phone="", country="", language="", custom_attributes={})
    if field.startswith("attributes."):
        if actual is not MISSING:
            contact.custom_attributes = {field.partition(".")[2]: actual}
    else:
        setattr(contact, field, None if actual is MISSING else actual)
    return contact


def _row_id(row) -> str:
    field, op, expected, actual, _ = row
    return f"{field} {op} {expected!r} on {'missing' if actual is MISSING else repr(actual)}"


@pytest.mark.parametrize(("field", "op", "expected", "actual", "result"), TABLE, ids=[_row_id(r) for r in TABLE])
def test_every_path_gives_the_same_result(field, op, expected, actual, result):
    value = None if actual is MISSING else actual
    condition = {"field": field, "op": op, **({"value": expected} if expected is not None else {})}
    subjects = field_spec(field).subjects
    for subject in subjects:
        validate_conditions([condition], subject=subject)  # every row is a valid condition
    assert check(value, op, expected) is result
    assert _tester(op, expected)(value) is result
    rule = {"match": "all", "conditions": [condition]}
    matched, lines = evaluate(rule, StubFacts(field, actual))
    assert matched is result and lines == [f"{field} {op} {expected!r}: {'yes' if result else 'no'} (is {value!r})"]
    assert evaluate_compiled(compile_rule(rule), StubFacts(field, actual), {}) == (matched, lines)
    if CONTACT in subjects:  # the segment path: the same condition in a segment's rule, on a contact
        contact = _contact(field, actual)
        assert ContactFacts(contact).get(field) == value
        assert segment_matches(rule, contact) is result


def test_the_table_covers_every_operator():
    assert {row[1] for row in TABLE} == set(OPERATORS)


# --- the validator ------------------------------------------------------------------------------------------

BAD = [
    # conditions, subject, the message (or its start)
    ({}, CONVERSATION, 'A list such as [{"field": "language", "op": "eq", "value": "es"}]'),
    ("country eq US", CONTACT, "A list such as"),
    (["junk"], CONVERSATION, "Condition 1 ('junk'): each condition needs field, op and usually value"),
    ([{"field": "country"}], CONVERSATION, "Condition 1 ({'field': 'country'}): each condition needs field, op"),
    ([{"field": 5, "op": "eq"}], CONVERSATION, "Condition 1 ({'field': 5, 'op': 'eq'}): field and op are text"),
    ([{"field": "country", "op": ["eq"]}], CONTACT, "field and op are text"),
    ([{"field": "country", "op": "eq", "vaule": "US"}], CONVERSATION,
     "Condition 1 (country eq): unknown key 'vaule'; a condition has field, op and value"),
    ([{"field": "colour", "op": "eq", "value": 1}], CONVERSATION, "Condition 1 (colour eq 1): Unknown field 'colour'"),
    ([{"field": "email", "op": "eq", "value": "a@b.c"}], CONVERSATION, "Unknown field 'email'"),
    ([{"field": "segment", "op": "eq", "value": "VIP"}], CONTACT, "Unknown field 'segment'"),
    ([{"field": "prechat.department", "op": "eq", "value": "x"}], CONTACT, "Unknown field 'prechat.department'"),
    ([{"field": "prechat.", "op": "eq", "value": "x"}], CONVERSATION,
     "'prechat.': name the answer or attribute, e.g. prechat.department"),
    ([{"field": "attributes..", "op": "exists"}], CONTACT, "'attributes..': name the answer or attribute, e.g. attributes.plan"),
    ([{"field": "country", "op": "like", "value": "US"}], CONVERSATION, "Condition 1 (country like 'US'): Unknown op"),
    ([{"field": "country", "op": "within", "value": ALWAYS_OPEN}], CONTACT, "Unknown op 'within'"),
    ([{"field": "business_hours", "op": "eq", "value": 1}], CONVERSATION, "business hours are tested with within"),
    ([{"field": "country", "op": "within", "value": ALWAYS_OPEN}], CONVERSATION,
     "business hours are tested with within"),
    ([{"field": "business_hours", "op": "within", "value": {"tz": "Nowhere"}}], CONVERSATION, "Unknown time zone"),
    ([{"field": "business_hours", "op": "within"}], CONVERSATION, "give the hours"),
    ([{"field": "priority", "op": "gte", "value": "high"}], CONVERSATION,
     "Condition 1 (priority gte 'high'): gte compares numbers: give a number, such as 5"),
    ([{"field": "priority", "op": "gt", "value": True}], CONVERSATION, "gt compares numbers"),
    ([{"field": "priority", "op": "lt"}], CONVERSATION, "lt compares numbers"),
    ([{"field": "priority", "op": "lte", "value": float("nan")}], CONVERSATION, "lte compares numbers"),
    ([{"field": "priority", "op": "gte", "value": 10**400}], CONVERSATION, "gte compares numbers"),
    ([{"field": "country", "op": "in", "value": []}], CONTACT, "in takes a value or a list of values"),
    ([{"field": "country", "op": "not_in", "value": {"fr": 1}}], CONTACT, "not_in takes a value or a list"),
    ([{"field": "text", "op": "any_of", "value": [["refund"]]}], CONVERSATION, "any_of takes a value or a list"),
    ([{"field": "country", "op": "eq", "value": ["FR", "DE"]}], CONTACT, "eq takes one value; use in for a list"),
    ([{"field": "country", "op": "neq"}], CONTACT, "neq needs a value; use exists to test that it is set"),
    ([{"field": "text", "op": "contains", "value": {"a": 1}}], CONVERSATION, "contains takes one value"),
    # the condition is named by its place and what it says
    ([{"field": "country", "op": "eq", "value": "US"}, {"field": "language", "op": "eq", "value": ["es"]}],
     CONVERSATION, "Condition 2 (language eq ['es']): eq takes one value; use in for a list"),
]


@pytest.mark.parametrize(("conditions", "subject", "message"), BAD, ids=[m for _, _, m in BAD])
def test_each_malformed_condition_has_its_message(conditions, subject, message):
    with pytest.raises(ConditionError) as raised:
        validate_conditions(conditions, subject=subject)
    assert str(raised.value).startswith(message) or message in str(raised.value), str(raised.value)


def test_a_number_too_big_for_a_float_matches_nothing_whichever_side_it_is_on():
    for op in ("gt", "gte", "lt", "lte"):
        for actual, expected in ((10**400, 5), (5, 10**400), (10**400, 10**400)):
            assert check(actual, op, expected) is False and _tester(op, expected)(actual) is False


def test_a_long_condition_is_named_in_short():
    with pytest.raises(ConditionError, match=r"^Condition 1 \(text any_of \['x+…\): any_of takes"):
        validate_conditions([{"field": "text", "op": "any_of", "value": ["x" * 200, None]}])


@pytest.mark.parametrize(("rule", "message"), [
    ("VIP", "A rule is an object with 'match' and 'conditions'"),
    ({"match": "some", "conditions": [{"field": "country", "op": "eq", "value": "FR"}]},
     "'match' must be 'all' or 'any'"),
    ({"match": "all", "conditions": []}, "'conditions' must be a non-empty list"),
    ({"match": "all"}, "'conditions' must be a non-empty list"),
    ({"match": "all", "conditions": [{"field": "country", "op": "eq", "value": "FR"}], "when": "now"},
     "Unknown key 'when'; a rule has 'match' and 'conditions'"),
    ({"conditions": [{"field": "vip_level", "op": "gte", "value": 5}]}, "Condition 1 (vip_level gte 5): Unknown field"),
])
def test_a_malformed_segment_rule_has_its_message(rule, message):
    with pytest.raises(ConditionError) as raised:
        validate_rule(rule)
    assert str(raised.value).startswith(message), str(raised.value)


def test_every_catalogued_field_is_valid_for_its_subjects_only():
    for name, spec in FIELDS.items():
        op, value = ("within", ALWAYS_OPEN) if name == "business_hours" else ("exists", None)
        for subject in (CONVERSATION, CONTACT):
            if subject in spec.subjects:
                validate_conditions([{"field": name, "op": op, "value": value}], subject=subject)
            else:
                with pytest.raises(ConditionError, match="Unknown field"):
                    validate_conditions([{"field": name, "op": op, "value": value}], subject=subject)
    assert "attributes.<key>" in field_names(CONTACT) and "prechat.<key>" not in field_names(CONTACT)
    assert {"name", "email", "phone", "country", "language"} <= set(field_names(CONTACT))
    validate_rule(None)
    validate_rule({})
    assert validate_conditions(None) == []


# --- the explanation format ---------------------------------------------------------------------------------

class DictFacts:
    def __init__(self, values):
        self.values = values

    def get(self, name):
        return self.values.get(name)


def test_the_explanation_format():
    facts = DictFacts({"country": "US", "vip_level": 5, "tags": ["late"]})
    rule = {"match": "any", "conditions": [
        {"field": "country", "op": "eq", "value": "US"},
        {"field": "vip_level", "op": "gte", "value": 7},
        {"field": 5, "op": "eq", "value": 1},
        {"field": "tags", "op": "exists"},
        {"field": "language", "op": "in", "value": ["es", "fr"]},
    ]}
    expected = (True, [
        "country eq 'US': yes (is 'US')",
        "vip_level gte 7: no (is 5)",
        "ignored malformed condition {'field': 5, 'op': 'eq', 'value': 1}",
        "tags exists None: yes (is ['late'])",
        "language in ['es', 'fr']: no (is None)",
    ])
    assert evaluate(rule, facts) == expected
    assert evaluate_compiled(compile_rule(rule), facts, {}) == expected
    assert evaluate({**rule, "match": "all"}, facts)[0] is False
    assert evaluate({"match": "all", "conditions": []}, facts) == (True, [NO_CONDITIONS])
    assert NO_CONDITIONS == "no conditions: always matches"
    assert evaluate_compiled(compile_rule({"conditions": []}), facts, {}) == (True, [NO_CONDITIONS])


def test_a_segment_rule_that_does_not_validate_matches_nobody():
    contact = Contact(name="Ann", custom_attributes={"plan": "gold"})
    good = {"field": "attributes.plan", "op": "eq", "value": "gold"}
    assert segment_matches({"match": "any", "conditions": [good]}, contact)
    assert not segment_matches({"match": "any", "conditions": [good, {"field": "colour", "op": "eq", "value": 1}]},
                               contact)
    assert not segment_matches(None, contact) and not segment_matches({}, contact)
    assert segment_matches({"match": "all", "conditions": [{"field": "name", "op": "startswith", "value": "a"},
                                                           {"field": "attributes.nps", "op": "neq", "value": 0}]},
                           contact)


# --- the admin forms use the validator -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_forms_refuse_a_malformed_condition_with_a_form_error(make_agent, client):
    client.force_login(make_agent("root", role="admin"))
    team = Team.objects.create(name="Support")
    bad = '[{"field": "vip_level", "op": "gte", "value": "high"}]'
    r = client.post("/admin/routing/routingrule/add/", {
        "name": "R", "position": 1, "match": "all", "is_active": "on", "target": "team", "target_team": team.pk,
        "secondary_target": "", "skill_min_level": 1, "set_tags": "", "conditions": bad})
    assert r.status_code == 200 and "gte compares numbers" in r.content.decode()
    assert not RoutingRule.objects.exists()
    r = client.post("/admin/sla/slapolicy/add/", {
        "name": "P", "position": 1, "match": "all", "is_active": "on", "conditions": bad,
        "targets": '{"first_response": {"normal": 60}}', "business_time_metrics": "[]", "pause_statuses": "[]",
        "warn_at_percent": 75, "escalations": "[]"})
    assert r.status_code == 200 and "gte compares numbers" in r.content.decode()
    assert not SlaPolicy.objects.exists()
    r = client.post("/admin/conversations/segment/add/", {
        "name": "VIP", "label": "", "color": "#d97706", "priority_level": 5,
        "rule": '{"match": "all", "conditions": [{"field": "vip_level", "op": "gte", "value": 5}]}'})
    assert r.status_code == 200 and "Unknown field &#x27;vip_level&#x27;" in r.content.decode()
    assert not Segment.objects.exists()
    r = client.post("/admin/routing/routingrule/add/", {
        "name": "R", "position": 1, "match": "all", "is_active": "on", "target": "team", "target_team": team.pk,
        "secondary_target": "", "skill_min_level": 1, "set_tags": "",
        "conditions": '[{"field": "priority", "op": "gt", "value": 1' + "0" * 400 + "}]"})
    assert r.status_code == 200 and "gt compares numbers" in r.content.decode()
    # the same forms take a good one
    r = client.post("/admin/sla/slapolicy/add/", {
        "name": "P", "position": 1, "match": "all", "is_active": "on",
        "conditions": '[{"field": "team", "op": "eq", "value": "Support"}]',
        "targets": '{"first_response": {"normal": 60}}', "business_time_metrics": "[]", "pause_statuses": "[]",
        "warn_at_percent": 75, "escalations": "[]"})
    assert r.status_code == 302, r.content.decode()[:3000]
    r = client.post("/admin/conversations/segment/add/", {
        "name": "VIP", "label": "", "color": "#d97706", "priority_level": 5,
        "rule": '{"match": "all", "conditions": [{"field": "attributes.spend_tier", "op": "gte", "value": 5}]}'})
    assert r.status_code == 302 and Segment.objects.get().rule["match"] == "all"


@pytest.mark.django_db
def test_a_rule_stored_before_the_validator_can_still_be_moved_in_the_changelist(make_agent, client):
    """The changelist edits position and active only: the rule's stored conditions are not checked there."""
    client.force_login(make_agent("root", role="admin"))
    team = Team.objects.create(name="Support")
    old = RoutingRule.objects.create(name="Old", position=5, target="team", target_team=team,
                                     conditions=[{"field": "country", "op": "within", "value": 1}])
    r = client.post("/admin/routing/routingrule/", {
        "form-TOTAL_FORMS": 1, "form-INITIAL_FORMS": 1, "form-0-id": old.pk, "form-0-position": 7,
        "form-0-is_active": "on", "_save": "Save"})
    assert r.status_code == 302
    old.refresh_from_db()
    assert old.position == 7
    r = client.post(f"/admin/routing/routingrule/{old.pk}/change/", {
        "name": "Old", "position": 7, "match": "all", "is_active": "on", "target": "team", "target_team": team.pk,
        "secondary_target": "", "skill_min_level": 1, "set_tags": "", "conditions": "[]"})
    assert r.status_code == 302  # the change form replaces them


@pytest.mark.django_db
def test_the_models_clean_uses_the_validator():
    for instance, field in ((RoutingRule(name="R", conditions=[{"field": "colour", "op": "eq", "value": 1}]),
                             "conditions"),
                            (SlaPolicy(name="P", conditions=[{"field": "colour", "op": "eq", "value": 1}]),
                             "conditions"),
                            (Segment(name="S", rule={"conditions": [{"field": "colour", "op": "eq", "value": 1}]}),
                             "rule")):
        instance.clean_fields(exclude={"name", "position", "targets", field})  # not asked: not checked
        with pytest.raises(ValidationError) as raised:
            instance.full_clean()
        assert field in raised.value.message_dict
        assert raised.value.message_dict[field][0].startswith("Condition 1 (colour eq 1): Unknown field 'colour'; use")
