"""One error type for services, mapped to 400 with a message in the API and to form errors in pages."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ServiceError(Exception):
    """A business rule refused the operation; the message is safe to show to the user."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ServiceError):
        detail = {exc.field: [exc.message]} if exc.field else {"detail": exc.message}
        return Response(detail, status=400)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=400)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    return exception_handler(exc, context)
