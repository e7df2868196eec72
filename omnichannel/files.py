"""Serving uploaded files safely, for the console, the API and the widget alike."""

from __future__ import annotations

from django.http import FileResponse

SAFE_INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def attachment_response(att) -> FileResponse:
    """Serve an upload (an Attachment) safely: images inline, everything else (SVG, HTML…) as a download."""
    inline = att.content_type in SAFE_INLINE_TYPES
    response = FileResponse(att.file.open("rb"), as_attachment=not inline, filename=att.filename,
                            content_type=att.content_type if inline else "application/octet-stream")
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response
