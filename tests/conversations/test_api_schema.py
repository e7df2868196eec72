"""The OpenAPI schema says what the API does: it validates with no warning, its docs pages are served from our own
files, and schemathesis finds no 500 and no answer the schema does not describe, over every operation."""

from __future__ import annotations

import io
import os
import re
import time

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

SCHEMA_URL = "/api/v1/schema/"


def test_schema_generates_and_validates_without_warnings():
    """`manage.py spectacular --validate --fail-on-warn`: any warning or error fails (the messages are printed)."""
    from drf_spectacular.drainage import GENERATOR_STATS

    GENERATOR_STATS.reset()
    out, err = io.StringIO(), io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=err)
    assert "Warning" not in err.getvalue() and "Error" not in err.getvalue(), err.getvalue()
    assert "/api/v1/inboxes/{inbox_id}/incoming/" in out.getvalue()


def _schema(client) -> dict:
    r = client.get(SCHEMA_URL, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    return r.json()


def test_schema_documents_what_the_views_answer(world, api_client_for):
    schema = _schema(api_client_for(world.alice))
    paths = schema["paths"]
    incoming = paths["/api/v1/inboxes/{inbox_id}/incoming/"]["post"]["responses"]
    ref = "#/components/schemas/"
    assert incoming["201"]["content"]["application/json"]["schema"]["$ref"] == ref + "InboundOutput"
    assert incoming["200"]["content"]["application/json"]["schema"]["$ref"] == ref + "InboundOutput"
    assert incoming["202"]["content"]["application/json"]["schema"]["$ref"] == ref + "InboundPendingOutput"
    assert paths["/api/v1/conversations/"]["post"]["responses"]["201"] == incoming["201"]
    sms = paths["/api/v1/inboxes/{inbox_id}/sms/messages/"]["post"]["responses"]
    assert sms["201"]["content"]["application/json"]["schema"]["$ref"] == ref + "ProactiveSmsOutput"
    components = schema["components"]["schemas"]
    assert set(components["InboundOutput"]["required"]) == {"duplicate", "conversation_id", "message"}
    assert set(components["InboundPendingOutput"]["required"]) == {"duplicate", "pending", "delivery_id", "detail"}
    assert components["ErrorOutput"]["required"] == ["error"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            for code in ("400", "401", "403", "404", "429"):
                error = operation["responses"][code]["content"]["application/json"]["schema"]
                assert error["$ref"] == ref + "ErrorOutput", (method, path, code)
            assert {"Token": []} in operation["security"], (method, path)
    assert schema["components"]["securitySchemes"]["Token"] == {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": schema["components"]["securitySchemes"]["Token"]["description"]}
    download = paths["/api/v1/attachments/{attachment_id}"]["get"]["responses"]["200"]["content"]
    assert download["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}


def test_docs_pages_are_served_from_our_own_static_files(client):
    """Swagger UI and Redoc work offline and under a Content-Security-Policy of `script-src 'self'`: every script
    is a file of ours (drf-spectacular-sidecar's under /static/), none is inline, nothing comes from a CDN."""
    from django.contrib.staticfiles import finders

    swagger = client.get("/api/v1/docs/")
    redoc = client.get("/api/v1/redoc/")
    script = client.get("/api/v1/docs/?script=")
    assert swagger.status_code == redoc.status_code == script.status_code == 200
    assert SCHEMA_URL in script.content.decode() and script["Content-Type"].startswith("application/javascript")
    for page in (swagger.content.decode(), redoc.content.decode()):
        assert "https://" not in page and "http://" not in page, page
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), page  # no inline script
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert sources
        for src in sources:
            assert src.startswith("/"), src
            if src.startswith("/static/"):
                assert finders.find(src.removeprefix("/static/")), src
    assert 'src="/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"' in swagger.content.decode()
    assert 'src="/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"' in redoc.content.decode()
    assert f'spec-url="{SCHEMA_URL}"' in redoc.content.decode()


def test_unknown_api_address_is_a_json_404(world, api_client_for):
    api = api_client_for(world.alice)
    for path in ("/api/v1/nope/", "/api/v1/conversations/abc/", "/api/v1/attachments/-1"):
        r = api.get(path)
        assert r.status_code == 404 and r["Content-Type"] == "application/json" and r.json()["error"], path
    assert api.get("/console/nope/").status_code == 404
    assert api.get("/console/nope/")["Content-Type"].startswith("text/html")


def test_conversation_shows_its_routing_decisions(world, api_client_for):
    from routing.actions import do_route_conversation
    from routing.models import RoutingDecision

    api = api_client_for(world.alice)
    r = api.post(f"/api/v1/inboxes/{world.inbox_api.id}/incoming/", {"source_id": "c-1", "body": "Hello"},
                 format="json")
    conv_id = r.json()["conversation_id"]
    assert api.get(f"/api/v1/conversations/{conv_id}/").json()["routing"] is None
    do_route_conversation(conversation_id=conv_id)
    decision = RoutingDecision.objects.filter(conversation_id=conv_id).latest("id")
    routing = api.get(f"/api/v1/conversations/{conv_id}/").json()["routing"]
    assert routing["id"] == decision.id and routing["summary"] == decision.summary
    assert routing["outcome"] == decision.outcome and routing["details"] == decision.details
    assert routing["agent_id"] == (decision.agent.user_id if decision.agent_id else None)
    listing = api.get(f"/api/v1/conversations/{conv_id}/routing/").json()
    assert listing["count"] == RoutingDecision.objects.filter(conversation_id=conv_id).count() >= 1
    assert listing["results"][0] == routing
    # Only to who may see the conversation: charlie works another team's inbox.
    assert api_client_for(world.charlie).get(f"/api/v1/conversations/{conv_id}/routing/").status_code == 404


# --- schemathesis over every operation ------------------------------------------------------------------------

# Per operation and way of generating: 3 ways x 18 operations x 12 examples, about a minute, the same examples
# every run. API_FUZZ_EXAMPLES=300 explores further, with new random examples each run.
EXAMPLES = int(os.getenv("API_FUZZ_EXAMPLES", "12"))
DERANDOMIZE = "API_FUZZ_EXAMPLES" not in os.environ


@pytest.fixture
def seeded(world):
    """What the operations' ids can point at: an API conversation with a reply, a note and an attachment, a routing
    decision, and an SMS inbox with an opted-in phone."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from conversations import actions
    from conversations.models import Attachment, ChannelKind, Inbox
    from omnichannel.integrations.api import inbound as api_inbound
    from omnichannel.integrations.twilio_sms import actions as sms_actions
    from routing.actions import do_route_conversation

    received = api_inbound.receive(inbox=world.inbox_api, source_id="cust-1", body="Hello", provider_message_id="p-1",
                                   contact={"name": "Zoe", "email": "zoe@example.com"}, subject="", files=[],
                                   meta={"order": 42}, conversation=None)
    conversation = received.message.conversation
    do_route_conversation(conversation_id=conversation.id)
    reply = actions.do_send_agent_reply(actor=world.bob, conversation=conversation, body="Hi!",
                                        attachments=[SimpleUploadedFile("a.png", b"\x89PNG\r\n\x1a\n", "image/png")])
    sms = Inbox.objects.create(name="SMS", kind=ChannelKind.SMS, secret="tok",
                               settings={"account_sid": "AC" + "1" * 32, "from_number": "+15550100000"})
    world.support.inboxes.add(sms)
    sms_actions.do_record_sms_consent(inbox=sms, phone="+14155550123", opted_in=True, source="api", detail="")
    return {"conversation_id": conversation.id, "contact_id": conversation.contact_id, "message_id": reply.id,
            "attachment_id": Attachment.objects.get(message=reply).id, "inbox_id": world.inbox_api.id,
            "sms_inbox_id": sms.id}


def _known_ids(operation, seeded: dict) -> dict:
    names = {p.name for p in operation.path_parameters}
    ids = {name: seeded[name] for name in names}
    if "inbox_id" in ids and "/sms/" in operation.path:
        ids["inbox_id"] = seeded["sms_inbox_id"]
    return ids


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(world, seeded, api_client_for):
    """Every operation of the schema, three ways: valid data with the seeded objects' ids, valid data with any ids,
    and invalid data (negative mode) with the seeded ids; in process through the WSGI handler, as bob (a supervisor,
    who sees every inbox). Each request runs in a savepoint, kept unless the answer was a 500."""
    import schemathesis
    from django.core import signals
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import close_old_connections, transaction
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.failures import FailureGroup

    from agents.actions import do_create_api_token

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    _token, key = do_create_api_token(user=world.bob, name="fuzz")
    headers = {"Authorization": f"Token {key}"}
    app = WSGIHandler()
    # As Django's test client does: the request signals would close the test's connection (and its transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, app, headers={"Accept": "application/vnd.oai.openapi"})
        operations = [result.ok() for result in schema.get_all_operations()]
        failures: dict[str, str] = {}
        calls = 0
        statuses: dict[int, int] = {}

        def run(operation, mode, path_parameters):
            @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None))
            def fuzz(case):
                nonlocal calls
                calls += 1
                savepoint = transaction.savepoint()
                response = case.call(headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code >= 500:
                    transaction.savepoint_rollback(savepoint)
                else:
                    transaction.savepoint_commit(savepoint)
                try:
                    case.validate_response(response, checks=checks, headers=headers)
                except FailureGroup as exc:  # keep the first of each kind, go on
                    first_line = str(exc).strip().splitlines()[0]
                    failures.setdefault(f"{operation.label} [{mode.value}] {first_line}", str(exc)[:3000])

            try:
                fuzz()
            except Unsatisfiable:  # nothing to make invalid (the fixed ids were the only input)
                return False
            return True

        started = time.monotonic()
        for operation in operations:
            known = _known_ids(operation, seeded)
            run(operation, GenerationMode.POSITIVE, known)
            if known:
                run(operation, GenerationMode.POSITIVE, {})
            if not run(operation, GenerationMode.NEGATIVE, known):
                run(operation, GenerationMode.NEGATIVE, {})
        elapsed = time.monotonic() - started
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    print(f"schemathesis: {len(operations)} operations, {calls} requests, {elapsed:.0f} s, {len(failures)} failures; "
          f"statuses {dict(sorted(statuses.items()))}")
    assert len(operations) == 18
    assert not failures, "\n\n".join(f"== {title}\n{detail}" for title, detail in failures.items())
