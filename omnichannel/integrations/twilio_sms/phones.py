"""Phone numbers as Twilio and our SMS consent records spell them (E.164)."""

from __future__ import annotations

import phonenumbers


def normalize_phone(raw: str) -> tuple[str, str]:
    """(E.164, ISO country) for a phone number; raw text when it cannot be parsed."""
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else "US")
    except phonenumbers.NumberParseException:
        return raw.strip(), ""
    return (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.region_code_for_number(number) or "")
