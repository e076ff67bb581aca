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
from typing import Sequence

import httpx
import numpy as np

from edgezo.adapters.robustify.blackbox import BlackBox, BlackBoxError, QueryBudgetExceeded


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
        self._client = httpx.Client(base_url=self.url, headers={"X-API-Key": api_key}, timeout=timeout)
        self.retries = int(retries)
        info = self._request("GET", "/v1/model")
        self.num_classes = info.get("num_classes")
        self.endpoint_output = info.get("output")
        if output == "probabilities" and self.endpoint_output == "labels":
            raise BlackBoxError(f"{self.url} returns labels only; ZO training needs probabilities")
        super().__init__(input_shape=input_shape or info["input_shape"], output=output, budget=budget,
                         max_batch=max_batch)

    def _request(self, method: str, path: str, **kw) -> dict:
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.request(method, path, **kw)
            except httpx.TransportError as err:
                if attempt == self.retries:
                    raise BlackBoxError(f"cannot reach the model endpoint {self.url}: {err}") from None
                time.sleep(0.2 * 2**attempt)
                continue
            if resp.status_code in (502, 503, 504) and attempt < self.retries:
                time.sleep(0.2 * 2**attempt)
                continue
            break
        if resp.status_code == 200:
            return resp.json()
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        if resp.status_code == 429:
            raise QueryBudgetExceeded(f"the model endpoint refused: {detail}")
        if resp.status_code == 401:
            raise BlackBoxError(f"the model endpoint {self.url} refused the API key: {detail}")
        raise BlackBoxError(f"the model endpoint {self.url} answered {resp.status_code}: {detail}")

    def _query(self, x: np.ndarray) -> np.ndarray:
        body = {"inputs_b64": base64.b64encode(x.astype("<f4").tobytes()).decode("ascii"),
                "shape": list(x.shape), "output": self.output}
        answer = self._request("POST", "/v1/predict", json=body)
        key = "labels" if self.output == "labels" else "probabilities"
        if key not in answer:
            raise BlackBoxError(f"the model endpoint answered without {key!r}")
        return np.asarray(answer[key], dtype=np.int64 if key == "labels" else np.float32)

    def close(self) -> None:
        self._client.close()
