"""Message templates: ``render_template`` fills a template's ``{{ placeholders }}`` from a contact and the
caller's variables (proactive SMS).
"""

from __future__ import annotations

import re

from omnichannel.errors import ActionError

from ..models import (
    Contact,
)

PLACEHOLDER_VAR = re.compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")


def render_template(body: str, *, contact: Contact, variables: dict) -> str:
    values = {"contact.first_name": contact.first_name, "contact.name": contact.name, "contact.email": contact.email,
              **{str(k): str(v) for k, v in (variables or {}).items()}}
    missing = [m for m in PLACEHOLDER_VAR.findall(body) if m not in values]
    if missing:
        raise ActionError(f"Missing template variables: {', '.join(sorted(set(missing)))}", field="variables")
    return PLACEHOLDER_VAR.sub(lambda m: values[m.group(1)], body)
