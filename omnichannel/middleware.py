"""Project middleware."""

from __future__ import annotations

from django.http import JsonResponse


def reject_nul_bytes(get_response):
    """A NUL byte in the path or the query string is refused with 400 before any view runs: PostgreSQL text
    cannot hold one, so a lookup or filter with it would fail as a 500. (Form and API bodies are checked by
    their fields' own validators: Django's and DRF's CharField refuse NUL with a field error.)"""

    def middleware(request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            return JsonResponse({"error": "NUL characters are not allowed in the address."}, status=400)
        return get_response(request)

    return middleware
