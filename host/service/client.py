"""HttpBlackBox: a remote ``edgezo serve model`` endpoint as a black box (httpx).

Inputs travel as base64 float32 (``inputs_b64``), answers as JSON. A 429 from
the endpoint (its budget for this key is spent) raises
:class:`~edgezo.adapters.robustify.blackbox.QueryBudgetExceeded`; a refused key
or another error raises :class:`~edgezo.adapters.robustify.blackbox.BlackBoxError`
with the endpoint's message. Transient failures (connection errors, 502–504)
are retried a few times with back-off.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Annotated, Any

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgezo.adapters.robustify.blackbox import BlackBox, BlackBoxError, QueryBudgetExceeded

Dim = Annotated[int, Field(ge=1, le=2**20)]


class TargetInfo(BaseModel):
    """What ``GET /v1/model`` must answer (other fields are ignored)."""

    model_config = ConfigDict(allow_inf_nan=False)
    input_shape: Annotated[list[Dim], Field(min_length=1, max_length=8)]
    num_classes: Annotated[int, Field(ge=1, le=2**20)] | None = None
    output: str | None = None


class ProbabilitiesAnswer(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    probabilities: list[list[float]]


class LabelsAnswer(BaseModel):
    labels: list[Annotated[int, Field(ge=0, le=2**31)]]


class HttpBlackBox(BlackBox):
    """Args:
        url: base URL of the endpoint, e.g. ``http://127.0.0.1:8080``.
        api_key: sent as ``X-API-Key``.
        output: ``"probabilities"`` or ``"labels"``.
        budget: a local cap on queries (the endpoint enforces its own as well).
        input_shape: the sample shape; asked from ``GET /v1/model`` when omitted.
    """

    def __init__(self, url: str, api_key: str, *, output: str = "probabilities", budget: int | None = None,
                 max_batch: int = 4096, input_shape: Sequence[int] | None = None, timeout: float = 60.0,
                 retries: int = 3):
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, headers={"X-API-Key": api_key}, timeout=timeout,
                                    follow_redirects=False)
        self.retries = int(retries)
        info = self._answer(TargetInfo, self._request("GET", "/v1/model"), "GET /v1/model")
        self.num_classes = info.num_classes
        self.endpoint_output = info.output
        if output == "probabilities" and self.endpoint_output == "labels":
            raise BlackBoxError(f"{self.url} returns labels only; ZO training needs probabilities", status=200)
        super().__init__(input_shape=input_shape or info.input_shape, output=output, budget=budget,
                         max_batch=max_batch)

    def _request(self, method: str, path: str, **kw) -> Any:
        """The endpoint's JSON answer; errors name the status only (never the endpoint's own words)."""
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.request(method, path, **kw)
            except httpx.TransportError as err:
                if attempt == self.retries:
                    raise BlackBoxError(f"cannot reach the model endpoint {self.url} ({type(err).__name__})",
                                        status=None) from None
                time.sleep(0.2 * 2**attempt)
                continue
            if resp.status_code in (502, 503, 504) and attempt < self.retries:
                time.sleep(0.2 * 2**attempt)
                continue
            break
        code = resp.status_code
        if code == 429:
            raise QueryBudgetExceeded(f"the model endpoint {self.url} refused (429): the query budget exhausted "
                                      "for this API key")
        if code == 401:
            raise BlackBoxError(f"the model endpoint {self.url} refused the API key (401)", status=code)
        if code != 200:
            raise BlackBoxError(f"the model endpoint {self.url} answered {method} {path} with status {code}",
                                status=code)
        try:
            return resp.json()
        except ValueError:
            raise BlackBoxError(f"the model endpoint {self.url} answered {method} {path} with something that is "
                                "not JSON", status=code) from None

    def _answer(self, model: type[BaseModel], data: Any, what: str):
        try:
            return model.model_validate(data)
        except ValidationError as err:
            fields = sorted({".".join(map(str, e["loc"])) or "body" for e in err.errors()})
            raise BlackBoxError(f"the model endpoint {self.url} answered {what} without a valid "
                                f"{', '.join(fields)}; is it an edgezo model endpoint?", status=200) from None

    def _query(self, x: np.ndarray) -> np.ndarray:
        body = {"inputs_b64": base64.b64encode(x.astype("<f4").tobytes()).decode("ascii"),
                "shape": list(x.shape), "output": self.output}
        answer = self._request("POST", "/v1/predict", json=body)
        if self.output == "labels":
            labels = self._answer(LabelsAnswer, answer, "POST /v1/predict").labels
            return np.asarray(labels, dtype=np.int64)
        probs = self._answer(ProbabilitiesAnswer, answer, "POST /v1/predict").probabilities
        try:
            return np.asarray(probs, dtype=np.float32)
        except ValueError:
            raise BlackBoxError(f"the model endpoint {self.url} answered ragged probabilities", status=200) from None

    def close(self) -> None:
        self._client.close()
