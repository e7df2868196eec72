"""Phone numbers as Twilio and our SMS consent records spell them (E.164)."""

from __future__ import annotations

import phonenumbers


def _parse(raw: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else "US")
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def normalize_phone(raw: str) -> tuple[str, str]:
    """(E.164, ISO country) for a phone number; the raw text (stripped) and "" when it is not a possible
    phone number (a sender's short code such as 12345 stays as it is; "12" is not +112)."""
    raw = (raw or "").replace("\x00", "").strip()
    number = _parse(raw)
    if number is None:
        return raw, ""
    return (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.region_code_for_number(number) or "")


def parse_phone(raw: str) -> str | None:
    """A number a person typed (consent, a new SMS), in E.164; None when it is not a possible phone number."""
    number = _parse((raw or "").replace("\x00", "").strip())
    return None if number is None else phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
