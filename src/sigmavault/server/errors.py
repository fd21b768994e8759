"""One JSON shape for every error the server answers: ``{"error": {"code": ..., "message": ...}}``.

The HTTP status comes from the error's stable ``code`` (see :data:`STATUS`), so a client can branch
on either. Nothing a handler raises ever reaches the client as a stack trace: an unexpected
exception becomes a 500 with code ``internal`` and a generic message, and is logged server-side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from sigmavault.errors import VaultError

__all__ = ["ERROR_RESPONSES", "STATUS", "ErrorBody", "error_response", "install", "status_of"]

log = logging.getLogger("sigmavault.server")

STATUS: dict[str, int] = {
    "invalid_input": 400,
    "dimension_mismatch": 400,
    "invalid_filter": 400,
    "empty_text": 400,
    "not_found": 404,
    "read_only": 409,
    "vault_locked": 423,
    "vault_closed": 503,
    "embedder_unavailable": 503,
    "corrupted": 500,
    "storage_full": 507,
    "storage_error": 500,
    "bundle_invalid": 400,
    "encryption_error": 403,
    "shard_unavailable": 503,
}
_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """What every failed request answers."""

    error: ErrorDetail


# Documented on every route so the OpenAPI schema names each status a route can answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 423, 503, 507)
}


def status_of(exc: VaultError) -> int:
    """The HTTP status for a sigmavault error (by its code; disk full is 507 whatever raised it)."""
    if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == 28:  # ENOSPC
        return 507
    return STATUS.get(exc.code, 400)


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=dict(headers or {}))


def _answer(
    request: Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The error response, remembered (with its tenant) for the dashboard's "recent errors"."""
    hub = getattr(request.app.state, "hub", None)
    principal = getattr(request.state, "principal", None)
    if hub is not None and principal is not None:
        hub.errors.append(
            {
                "time": time.time(),
                "tenant": principal.tenant,
                "method": request.method,
                "path": request.url.path,
                "status": status,
                "code": code,
                "message": message[:300],
            }
        )
    return error_response(status, code, message, headers)


async def _vault_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VaultError)
    status = status_of(exc)
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    return _answer(request, status, "storage_full" if status == 507 else exc.code, str(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return _answer(request, 422, "invalid_request", "; ".join(parts) or "the request is malformed")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return _answer(request, exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return _answer(request, 500, "internal", "the server failed to handle this request; see its log")


async def _disk_full(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OSError)
    if exc.errno == 28:
        return _answer(request, 507, "storage_full", "the disk holding the vault is full; free space and retry")
    return await _unexpected(request, exc)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the one error shape."""
    app.add_exception_handler(VaultError, _vault_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OSError, _disk_full)
    app.add_exception_handler(Exception, _unexpected)
