"""Segments (VIP levels): rule-based memberships kept up to date (``do_apply_segment_rules``, with the
condition language's ``segment_matches``) and the hand-picked ones (``do_set_contact_segments``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from .. import hooks
from ..conditions import segment_matches
from ..models import (
    Contact,
    ContactSegment,
    Segment,
)
from .common import publish_contact_changed


def do_apply_segment_rules(contact: Contact) -> None:
    """Bring rule-based segment memberships of `contact` up to date (manual ones are untouched)."""
    rule_segments = list(Segment.objects.exclude(rule__isnull=True))
    if not rule_segments:
        return
    current = {
        cs.segment_id: cs for cs in ContactSegment.objects.filter(contact=contact, segment__in=rule_segments)
    }
    for segment in rule_segments:
        matches = segment_matches(segment.rule, contact)
        existing = current.get(segment.id)
        if matches and existing is None:
            ContactSegment.objects.create(contact=contact, segment=segment, source=ContactSegment.Source.RULE)
        elif not matches and existing is not None and existing.source == ContactSegment.Source.RULE:
            existing.delete()


@transaction.atomic
def do_set_contact_segments(*, actor: AbstractBaseUser | None, contact: Contact,
                            segment_ids: Iterable[int]) -> None:
    """Set the hand-picked segments of `contact`; rule-based memberships stay as their rules say."""
    wanted = set(Segment.objects.filter(id__in=list(segment_ids)).values_list("id", flat=True))
    manual = ContactSegment.objects.filter(contact=contact, source=ContactSegment.Source.MANUAL)
    manual.exclude(segment_id__in=wanted).delete()
    have = set(ContactSegment.objects.filter(contact=contact).values_list("segment_id", flat=True))
    ContactSegment.objects.bulk_create(
        [ContactSegment(contact=contact, segment_id=sid, source=ContactSegment.Source.MANUAL)
         for sid in wanted - have]
    )
    hooks.contact_changed(contact=contact)
    publish_contact_changed(contact, actor)
