"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Route code raises :class:`APIError` (or one of its helpers); :func:`install_error_handlers`
turns it, Starlette's own HTTP errors and any unexpected exception into a JSON body of that
shape, so a client never sees a stack trace and the server never drops a connection on bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class APIError(Exception):
    """An error the client should see: HTTP status plus OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPE_BY_STATUS.get(status, "api_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI clients parse."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, *, param: str | None = None, code: str | None = "invalid_request") -> APIError:
    """A 400 for input the client can fix."""
    return APIError(400, message, param=param, code=code)


def not_found(message: str, *, code: str = "not_found", param: str | None = None) -> APIError:
    """A 404; also used, on purpose, for ids that exist but belong to another tenant."""
    return APIError(404, message, code=code, param=param)


def model_not_found(model: str) -> APIError:
    """The one answer for a model id the caller may not use, whether or not it exists."""
    return APIError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


def model_loading() -> APIError:
    """503 while the base model loads in the background (``/ready`` says when it is done)."""
    return APIError(
        503, "The base model is still loading; retry shortly.", code="model_loading", headers={"Retry-After": "5"}
    )


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return APIError(exc.status_code, str(exc.detail), code=None, headers=exc.headers).response()


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return APIError(500, "Internal server error.", type="api_error", code="internal_error").response()


def install_error_handlers(app: Starlette) -> None:
    """Route every error raised under ``app`` through OpenAI's error shape."""
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
