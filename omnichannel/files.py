"""Uploaded files, for the console, the API and the widget alike: one upload policy (what a file may be)
and serving them safely.

The upload policy: a file's declared type must be one the place accepts (the widget's config lists its
own; agents and API clients may send `UPLOAD_TYPES`), its first bytes and its name must agree with that
type (the browser's declared type alone is the sender's word), and no name ending of a program or a page
a browser would run (.exe, .js, .html, .svg…) passes, whatever its type.
"""

from __future__ import annotations

from django.http import FileResponse

from .errors import ActionError

ZIP = (b"PK\x03\x04",)
OLE = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",)  # the old Office formats (.doc, .xls, .ppt)
# Declared type -> (what the file starts with (none: the name only), the name endings that may go with it).
SIGNATURES = {
    "image/png": ((b"\x89PNG\r\n\x1a\n",), (".png",)),
    "image/jpeg": ((b"\xff\xd8\xff",), (".jpg", ".jpeg", ".jfif")),
    "image/gif": ((b"GIF87a", b"GIF89a"), (".gif",)),
    "image/webp": ((b"RIFF",), (".webp",)),
    "application/pdf": ((b"%PDF-",), (".pdf",)),
    "text/plain": ((), (".txt", ".log", ".text", "")),
    "text/csv": ((), (".csv", "")),
    "application/zip": (ZIP, (".zip",)),
    "application/msword": (OLE, (".doc",)),
    "application/vnd.ms-excel": (OLE, (".xls",)),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (ZIP, (".docx",)),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (ZIP, (".xlsx",)),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (ZIP, (".pptx",)),
    "audio/mpeg": ((b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"), (".mp3",)),
    "video/mp4": ((), (".mp4", ".m4v")),
}
# What agents and API clients may send (the widget's config says what visitors may).
UPLOAD_TYPES = frozenset(SIGNATURES)
EXECUTABLE_ENDINGS = (".exe", ".bat", ".cmd", ".com", ".scr", ".msi", ".js", ".mjs", ".vbs", ".ps1", ".jar",
                      ".sh", ".html", ".htm", ".xhtml", ".svg", ".hta", ".php", ".dll", ".apk", ".app")


def content_matches(f, content_type: str) -> bool:
    """The file's first bytes and its name agree with its declared type (types not listed: the name only)."""
    name = (f.name or "").lower()
    if name.endswith(EXECUTABLE_ENDINGS):
        return False
    magics, endings = SIGNATURES.get(content_type, ((), None))
    if endings is not None and "." in name and not name.endswith(tuple(e for e in endings if e)):
        return False
    head = f.read(16)
    f.seek(0)
    if content_type == "image/webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    if content_type in ("text/plain", "text/csv"):
        return b"\x00" not in head
    if content_type == "video/mp4":
        return head[4:8] == b"ftyp"
    return not magics or head.startswith(magics)


def check_upload(f, *, allowed_types=UPLOAD_TYPES, max_bytes: int | None = None, field: str = "files") -> None:
    """The upload policy for one file: ActionError (a 400 with the reason) unless it may be stored."""
    content_type = (getattr(f, "content_type", "") or "").split(";")[0].strip().lower()
    if max_bytes is not None and f.size > max_bytes:
        raise ActionError(f"{f.name} is larger than {max_bytes // (1024 * 1024)} MB", field=field)
    if content_type not in allowed_types:
        raise ActionError(f"Files of type {content_type or 'unknown'} are not accepted here ({f.name})", field=field)
    if not content_matches(f, content_type):
        raise ActionError(f"{f.name} is not the {content_type} file it claims to be", field=field)

SAFE_INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def attachment_response(att) -> FileResponse:
    """Serve an upload (an Attachment) safely: images inline, everything else (SVG, HTML…) as a download."""
    inline = att.content_type in SAFE_INLINE_TYPES
    response = FileResponse(att.file.open("rb"), as_attachment=not inline, filename=att.filename,
                            content_type=att.content_type if inline else "application/octet-stream")
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response
