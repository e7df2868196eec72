"""API plumbing shared by every app: one error shape, never a 500 for bad input."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from omnichannel.errors import ActionError, NotFound


def exception_handler(exc, context):
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
