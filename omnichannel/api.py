"""API plumbing shared by every app: one error shape, never a 500 for bad input, and the OpenAPI schema's view of
both (the error responses every operation documents, the API token's security scheme)."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.views import defaults
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
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

API_PREFIX = "/api/"


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
    if response is None:
        return None
    if isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    elif response.status_code == 400:
        fields = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"error": "Invalid input", "fields": fields}
    elif not (isinstance(response.data, dict) and "error" in response.data):
        response.data = {"error": str(response.data)}
    return response


def not_found(request, exception=None):
    """The project's 404 page (``handler404``): JSON in the API's error shape under /api/, Django's page elsewhere.
    A client of the API never gets an HTML page for an address that matches no endpoint."""
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"error": "Not found"}, status=404)
    return defaults.page_not_found(request, exception)


# --- the OpenAPI schema ---------------------------------------------------------------


class ErrorOutput(serializers.Serializer):
    """What every error answers (exception_handler above): a message, and which input was at fault."""

    error = serializers.CharField(help_text="What went wrong, for a person to read.")
    field = serializers.CharField(required=False, help_text="The input field at fault, when there is one.")
    fields = serializers.DictField(required=False,
                                   help_text="With `Invalid input`: each field's errors (nested for nested "
                                             "objects; `non_field_errors` for the body as a whole).")


ERROR_DESCRIPTIONS = {
    "400": "Bad input: the message says what, `field` or `fields` where.",
    "401": "No credentials, or an unknown or revoked API token.",
    "403": "Not allowed (a console session without its CSRF token, or a role that may not).",
    "404": "No such object, or one this user may not see (the same answer for both).",
    "413": "The request body is too large.",
    "415": "A request body in a media type the endpoint does not read.",
    "429": "Too many requests for this user (`API_RATE_LIMIT`); retry after `Retry-After` seconds.",
}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class ApiSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the error answers every operation can give, in their one JSON shape
    (400, 401, 403, 404, 429; 413 and 415 where a request body is read). An operation that documents a code
    itself keeps its own."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = ["400", "401", "403", "404", "429"]
        if self.method in BODY_METHODS:
            codes += ["413", "415"]
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorOutput, description=ERROR_DESCRIPTIONS[code]), code, direction=direction)
        return dict(sorted(responses.items()))


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The security scheme of agents.authentication.ApiTokenAuthentication: ``Authorization: Token <key>``."""

    target_class = "agents.authentication.ApiTokenAuthentication"
    name = "Token"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An API token, created on your profile page (/console/profile/): "
                           "`Authorization: Token <key>` (`Bearer <key>` works too).",
        }
