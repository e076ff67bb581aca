"""Request validation shared by the HTTP services: bounded types and JSON-safe 422 answers.

Every request body is a pydantic model with explicit bounds (docs/services.md):
floats finite (``allow_inf_nan=False``), integers in SQLite's signed 64-bit
range or tighter, strings and lists of bounded length. A body that fails is
answered 422 whose JSON lists each field, the error type and pydantic's message
— never the offending value, so the answer is valid JSON even when the body
held ``NaN`` or ``Infinity`` (which Python's JSON parser accepts).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field

SQLITE_INT_MAX = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=SQLITE_INT_MAX)]
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _finite(value):
    """``value`` with every non-finite float replaced by its name (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type"), "msg": _finite(e.get("msg"))}
              for e in exc.errors()[:20]]
    return JSONResponse(status_code=422, content={"detail": detail})


def install_error_handlers(app: FastAPI) -> None:
    """Answer malformed bodies with a JSON-safe 422 (no echo of the input)."""
    app.add_exception_handler(RequestValidationError, _validation_error)


def target_host(url: str) -> str:
    """The host name of ``url`` (lower case, IPv6 without brackets); '' when it has none."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def host_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether ``url``'s host is one of ``allowed`` (names compared exactly, addresses by value)."""
    host = target_host(url)
    if not host:
        return False
    for entry in allowed:
        entry = entry.strip().lower().strip("[]")
        if host == entry:
            return True
        try:
            if ipaddress.ip_address(host) == ipaddress.ip_address(entry):
                return True
        except ValueError:
            continue
    return False


__all__ = ["SQLITE_INT_MAX", "Count", "LOOPBACK", "install_error_handlers", "target_host", "host_allowed"]
