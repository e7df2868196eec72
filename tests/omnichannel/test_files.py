"""One upload policy for the console, the API and the widget (omnichannel/files.py; issue 14)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from conversations import actions
from omnichannel.errors import ActionError
from omnichannel.files import check_upload

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.mark.parametrize("name, data, content_type", [
    ("shot.png", PNG, "image/png"),
    ("invoice.pdf", b"%PDF-1.7 ...", "application/pdf"),
    ("notes.txt", b"hello", "text/plain"),
    ("report.docx", b"PK\x03\x04rest", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("list.csv", b"a,b\n1,2", "text/csv"),
])
def test_files_that_are_what_they_claim_pass(name, data, content_type):
    check_upload(SimpleUploadedFile(name, data, content_type=content_type))


@pytest.mark.parametrize("name, data, content_type, reason", [
    ("shot.png", b"MZ\x90\x00 a program", "image/png", "is not the image/png file"),
    ("page.html", b"<script>alert(1)</script>", "text/plain", "is not the text/plain file"),
    ("logo.svg", b"<svg onload=alert(1)>", "image/svg+xml", "not accepted"),
    ("run.exe", b"MZ", "application/octet-stream", "not accepted"),
    ("invoice.pdf.exe", b"%PDF-1.7", "application/pdf", "is not the application/pdf file"),
    ("shot.jpg", PNG, "image/png", "is not the image/png file"),
])
def test_anything_else_is_refused_with_the_reason(name, data, content_type, reason):
    with pytest.raises(ActionError) as exc:
        check_upload(SimpleUploadedFile(name, data, content_type=content_type))
    assert reason in exc.value.message


@pytest.mark.django_db
def test_agents_replies_and_notes_follow_the_policy(world, inbound, no_background_tasks):
    conv = inbound(inbox=world.inbox_api, source_id="shop-1").message.conversation
    bad = SimpleUploadedFile("page.html", b"<script>alert(1)</script>", content_type="text/plain")
    with pytest.raises(ActionError, match="is not the text/plain file"):
        actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="see", attachments=[bad])
    bad.seek(0)
    with pytest.raises(ActionError, match="is not the text/plain file"):
        actions.do_add_note(actor=world.alice, conversation=conv, body="see", attachments=[bad])
    ok = SimpleUploadedFile("shot.png", PNG, content_type="image/png")
    assert actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="", attachments=[ok]).id


@pytest.mark.django_db
def test_the_console_upload_answers_400_with_the_reason(world, inbound, client, no_background_tasks):
    conv = inbound(inbox=world.inbox_api, source_id="shop-2").message.conversation
    client.force_login(world.alice)
    bad = SimpleUploadedFile("shot.png", b"MZ\x90\x00 a program", content_type="image/png")
    r = client.post(f"/console/c/{conv.id}/reply/", {"body": "", "files": [bad]}, headers={"Accept": "application/json"})
    assert r.status_code == 400 and "is not the image/png file" in r.content.decode()
