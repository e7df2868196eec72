"""API plumbing shared by every app: one error shape, never a 500 for bad input."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from omnichannel.errors import ActionError, NotFound, clean_text


def _printable(data):
    """The error's text without what UTF-8 cannot encode: a field error may quote the input, lone surrogates
    and all, and the renderer's encode() would fail (a 500 for a 400)."""
    if isinstance(data, str):
        return clean_text(data)
    if isinstance(data, dict):
        return {clean_text(str(k)): _printable(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_printable(v) for v in data]
    return data


def exception_handler(exc, context):
    response = _exception_handler(exc, context)
    if response is not None:
        response.data = _printable(response.data)
    return response


def _exception_handler(exc, context):
    if isinstance(exc, ActionError):
        data = {"error": exc.message}
        if exc.field:
            data["field"] = exc.field
        return Response(data, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, NotFound):
        return Response({"error": str(exc)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, RequestDataTooBig):
        return Response({"error": "Request body is too large"}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, RecursionError):  # a JSON body nested too deeply for the parser
        return Response({"error": "Request body is nested too deeply"}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        return Response({"error": "; ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    elif response is not None and response.status_code == 400:
        response.data = {"error": "Invalid input", "fields": response.data}
    return response
