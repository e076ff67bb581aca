"""``edgezo serve model``: a classifier behind a query-only HTTP API.

The model owner's side of black-box robustification: clients with an API key
(header ``X-API-Key``) send inputs and get back probabilities or labels —
never weights, logits' scale or gradients. Each key has a query budget (one
query = one sample); a request that would exceed it is refused whole with
429 and costs nothing. Usage is kept in SQLite (in memory, or a file so that
budgets survive a restart).

Endpoints (OpenAPI at ``/openapi.json``, docs at ``/docs``):

* ``GET /healthz`` — liveness, no key needed;
* ``GET /v1/model`` — sample shape, number of classes, output kind;
* ``POST /v1/predict`` — ``{"inputs": [[...], ...]}`` or
  ``{"inputs_b64": base64(float32 little-endian), "shape": [B, ...]}``,
  optional ``"output": "labels"``; answers ``{"probabilities": [[...]]}`` or
  ``{"labels": [...]}`` with ``queries_used`` / ``queries_left``;
* ``GET /v1/usage`` — the key's usage and budget.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import sqlite3
import threading
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Security, status
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field

from edgezo.adapters.robustify.blackbox import BlackBoxError, OnnxBlackBox

from .auth import Credential, match
from .validation import SQLITE_INT_MAX, install_error_handlers

MAX_BATCH = 100_000


class UsageStore:
    """Queries used per API key (SQLite; ``":memory:"`` or a file path shared by several server processes).

    A charge is one atomic SQL statement (``UPDATE ... WHERE used + n <= budget``),
    so processes sharing the file never answer more queries than the budget.
    """

    def __init__(self, path: str | os.PathLike = ":memory:"):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(os.fspath(path), check_same_thread=False, isolation_level=None, timeout=30.0)
        if os.fspath(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS usage (owner TEXT PRIMARY KEY, used INTEGER NOT NULL)")

    def used(self, owner: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT used FROM usage WHERE owner = ?", (owner,)).fetchone()
        return int(row[0]) if row else 0

    def charge(self, owner: str, n: int, budget: int | None) -> int:
        """Add ``n`` queries if they fit the budget; returns the new total or raises 429."""
        limit = SQLITE_INT_MAX if budget is None else int(budget)
        with self._lock:
            self._db.execute("INSERT INTO usage (owner, used) VALUES (?, 0) ON CONFLICT(owner) DO NOTHING", (owner,))
            row = self._db.execute("UPDATE usage SET used = used + ? WHERE owner = ? AND used <= ? - ? "
                                   "RETURNING used", (int(n), owner, limit, int(n))).fetchone()
        if row is None:
            used = self.used(owner)
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                detail=f"query budget exhausted: {used} of {budget} queries used, "
                                       f"this request needs {n}")
        return int(row[0])

    def close(self) -> None:
        self._db.close()


MAX_VALUES = 2**24  # float32 values in one request (64 MiB)
MAX_B64 = 4 * MAX_VALUES * 4 // 3 + 8


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    inputs: Annotated[list, Field(max_length=MAX_BATCH)] | None = Field(
        None, description="a batch of samples as nested lists, shape (B, *sample_shape)")
    inputs_b64: Annotated[str, Field(max_length=MAX_B64)] | None = Field(
        None, description="base64 of float32 little-endian values (alternative to inputs)")
    shape: Annotated[list[Annotated[int, Field(ge=1, le=MAX_VALUES)]], Field(min_length=1, max_length=8)] | None = \
        Field(None, description="the batch shape for inputs_b64, e.g. [B, 64]")
    output: Literal["probabilities", "labels"] | None = Field(
        None, description="ask for labels only (default: the endpoint's output kind)")


class PredictResponse(BaseModel):
    probabilities: list[list[float]] | None = None
    labels: list[int] | None = None
    queries_used: int
    queries_left: int | None


class ModelInfo(BaseModel):
    input_shape: list[int]
    num_classes: int | None
    output: str
    dtype: str = "float32"


class Usage(BaseModel):
    name: str
    queries_used: int
    budget: int | None
    queries_left: int | None


def _decode(req: PredictRequest, sample_shape: tuple[int, ...]) -> np.ndarray:
    if (req.inputs is None) == (req.inputs_b64 is None):
        raise HTTPException(422, detail="send exactly one of 'inputs' (nested lists) or 'inputs_b64' (+ 'shape')")
    if req.inputs is not None:
        try:
            with np.errstate(over="ignore"):  # out-of-range values become inf and are refused below
                arr = np.asarray(req.inputs, dtype=np.float32)
            if arr.size > MAX_VALUES:
                raise HTTPException(413, detail=f"at most {MAX_VALUES} values per request, got {arr.size}")
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise HTTPException(422, detail="'inputs' must be a rectangular array of numbers") from None
    else:
        if not req.shape:
            raise HTTPException(422, detail="'inputs_b64' needs 'shape', e.g. [B, 64]")
        try:
            raw = base64.b64decode(req.inputs_b64, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, detail="'inputs_b64' is not valid base64") from None
        count = math.prod(req.shape)
        if count > MAX_VALUES:
            raise HTTPException(413, detail=f"shape {req.shape} has {count} values; at most {MAX_VALUES} per request")
        if len(raw) != 4 * count:
            raise HTTPException(422, detail=f"'inputs_b64' holds {len(raw) / 4:g} float32 values, "
                                            f"shape {req.shape} needs {count}")
        arr = np.frombuffer(raw, dtype="<f4").reshape(req.shape).astype(np.float32)
    per = math.prod(sample_shape)
    if arr.ndim < 1 or arr.shape[0] == 0 or arr.size != arr.shape[0] * per:
        raise HTTPException(422, detail=f"inputs must be a non-empty batch of samples of shape {list(sample_shape)} "
                                        f"({per} values each); got shape {list(arr.shape)}")
    if arr.shape[0] > MAX_BATCH:
        raise HTTPException(413, detail=f"at most {MAX_BATCH} samples per request, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise HTTPException(422, detail="inputs contain NaN or infinite values")
    return arr.reshape(arr.shape[0], *sample_shape)


def create_model_app(onnx_path: str | os.PathLike, keys: list[Credential], *, output: str = "probabilities",
                     scores: str = "logits", usage_db: str | os.PathLike = ":memory:",
                     threads: int | None = None) -> FastAPI:
    """The FastAPI app serving ``onnx_path`` to holders of ``keys`` (budgets = ``Credential.limit``)."""
    if output not in ("probabilities", "labels"):
        raise ValueError(f"output must be 'probabilities' or 'labels', got {output!r}")
    if not keys:
        raise ValueError("the model endpoint needs at least one API key")
    model = OnnxBlackBox(onnx_path, output="probabilities", scores=scores, threads=threads)
    usage = UsageStore(usage_db)
    app = FastAPI(title="edgezo model endpoint",
                  description="Query-only access to a classifier: probabilities or labels, never weights.",
                  version="1")
    app.state.usage = usage
    install_error_handlers(app)
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="your API key")

    def caller(presented: str | None = Security(header)) -> Credential:
        cred = match(keys, presented)
        if cred is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                detail="missing or unknown API key (send it in the X-API-Key header)",
                                headers={"WWW-Authenticate": "API-Key"})
        return cred

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model", response_model=ModelInfo)
    def info(cred: Credential = Depends(caller)) -> ModelInfo:
        return ModelInfo(input_shape=list(model.input_shape), num_classes=model.num_classes, output=output)

    @app.get("/v1/usage", response_model=Usage)
    def get_usage(cred: Credential = Depends(caller)) -> Usage:
        used = usage.used(cred.owner)
        left = None if cred.limit is None else max(0, cred.limit - used)
        return Usage(name=cred.name, queries_used=used, budget=cred.limit, queries_left=left)

    @app.post("/v1/predict", response_model=PredictResponse, response_model_exclude_unset=True,
              responses={401: {"description": "missing or unknown API key"},
                         403: {"description": "probabilities asked from a labels-only endpoint"},
                         413: {"description": "batch too large"},
                         422: {"description": "malformed inputs (or inputs the model cannot evaluate)"},
                         429: {"description": "query budget exhausted"}})
    def predict(req: PredictRequest, cred: Credential = Depends(caller)) -> PredictResponse:
        want = req.output or output
        if want == "probabilities" and output == "labels":
            raise HTTPException(403, detail="this endpoint returns labels only; ask for output='labels'")
        x = _decode(req, model.input_shape)
        used = usage.charge(cred.owner, x.shape[0], cred.limit)
        try:
            probs = model(x).numpy()
        except (BlackBoxError, ValueError) as err:
            raise HTTPException(422, detail=f"the model cannot evaluate this input: {err}") from None
        left = None if cred.limit is None else cred.limit - used
        if want == "labels":
            return PredictResponse(labels=probs.argmax(-1).tolist(), queries_used=used, queries_left=left)
        return PredictResponse(probabilities=probs.tolist(), queries_used=used, queries_left=left)

    return app
