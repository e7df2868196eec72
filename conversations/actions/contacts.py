"""Contacts: finding or creating a contact by a channel's identity (``get_or_create_contact``, the scope of
an identity: ``identity_scope``) and changing a contact's details (``do_update_contact``). Segments are in
``segments``, merging two contacts in ``merge``.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from omnichannel.errors import ActionError, check_json, check_text

from .. import channels, hooks
from ..models import (
    Contact,
    ContactIdentity,
    Inbox,
)
from .common import publish_contact_changed
from .segments import do_apply_segment_rules


def identity_scope(inbox: Inbox) -> str:
    """The scope of a sender's id on `inbox`: the inbox for ids that mean something only there (page-scoped
    ids, visitors, API source ids), "" for global ones (an email address, a phone number)."""
    return str(inbox.pk) if channels.for_inbox(inbox).identity_per_inbox else ""


def get_or_create_contact(*, kind: str, scope: str, value: str, name: str = "", email: str = "",
                           phone: str = "", country: str = "") -> tuple[Contact, bool]:
    identity = ContactIdentity.objects.select_related("contact").filter(kind=kind, scope=scope, value=value).first()
    if identity is not None:
        contact = identity.contact
        while contact.merged_into_id:  # an identity never points at a merged contact, but be safe
            contact = contact.merged_into
        return contact, False
    try:
        with transaction.atomic():
            contact = Contact.objects.create(name=name[:200], email=email[:254], phone=phone[:32],
                                             country=country[:2].upper())
            ContactIdentity.objects.create(contact=contact, kind=kind, scope=scope, value=value)
    except IntegrityError:
        # A concurrent delivery created the same identity first.
        identity = ContactIdentity.objects.select_related("contact").get(kind=kind, scope=scope, value=value)
        return identity.contact, False
    do_apply_segment_rules(contact)
    return contact, True


@transaction.atomic
def do_update_contact(*, actor: AbstractBaseUser | None, contact: Contact, name: str | None = None,
                      email: str | None = None, phone: str | None = None, country: str | None = None,
                      language: str | None = None, custom_attributes: dict | None = None) -> Contact:
    changed = []
    for fname, value in (("name", name), ("email", email), ("phone", phone), ("country", country),
                         ("language", language)):
        if value is not None and getattr(contact, fname) != check_text(value, field=fname, label=fname.title()):
            setattr(contact, fname, value)
            changed.append(fname)
    if custom_attributes is not None:
        if not isinstance(custom_attributes, dict):
            raise ActionError("custom_attributes must be an object", field="custom_attributes")
        check_json(custom_attributes, field="custom_attributes", label="Attributes")
        contact.custom_attributes = custom_attributes
        changed.append("custom_attributes")
    if changed:
        contact.full_clean(exclude=["segments"])
        contact.save(update_fields=[*changed, "updated_at"])
        do_apply_segment_rules(contact)
        hooks.contact_changed(contact=contact)
        publish_contact_changed(contact, actor)
    return contact
