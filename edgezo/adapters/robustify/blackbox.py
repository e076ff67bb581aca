"""Black-box classifiers: the model owner's query API, seen from the defender.

A black box maps a batch of inputs to class probabilities (or only labels) and
nothing else: no gradients, no weights. Every sample sent is one *query*; a
black box counts them and refuses a call that would exceed its budget
(nothing is sent then).

* :class:`CallableBlackBox` — any Python callable ``x (B, ...) -> (B, C)``.
* :class:`TorchBlackBox` — a torch module hidden behind softmax (the model
  owner's side in benchmarks and tests).
* :class:`OnnxBlackBox` — an ONNX model run by onnxruntime.

The HTTP client (a remote ``edgezo serve model`` endpoint) lives in
``edgezo.host.service.client``; it implements the same interface.
"""

from __future__ import annotations

import abc
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from edgezo.errors import ConfigError, EdgezoError, MissingFile

OUTPUTS = ("probabilities", "labels")


class QueryBudgetExceeded(EdgezoError, RuntimeError):
    """A call would exceed the query budget of a black box; nothing was sent."""


class BlackBoxError(EdgezoError, RuntimeError):
    """The black box answered something unusable (wrong shape, non-finite values, refused).

    ``status`` is the HTTP status of a remote black box's answer (None: unreachable or local).
    """

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class BlackBox(abc.ABC):
    """Query interface ``f: (B, *input_shape) → (B, C)`` probabilities, or labels.

    Args:
        input_shape: the shape of one sample the model accepts (inputs of
            another shape with as many entries are reshaped).
        output: ``"probabilities"`` (soft-max scores, needed for ZO training)
            or ``"labels"`` (enough for certification).
        budget: the most samples this object may send (None = unlimited).
        max_batch: samples per underlying call (larger batches are split).
    """

    def __init__(self, *, input_shape: Sequence[int] | None, output: str = "probabilities",
                 budget: int | None = None, max_batch: int = 4096):
        if output not in OUTPUTS:
            raise ConfigError(f"output must be one of {OUTPUTS}, got {output!r}")
        if budget is not None and budget < 0:
            raise ConfigError(f"budget must be >= 0 or None, got {budget}")
        if max_batch < 1:
            raise ConfigError(f"max_batch must be positive, got {max_batch}")
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.output = output
        self.budget = budget
        self.max_batch = int(max_batch)
        self.queries = 0
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(0, self.budget - self.queries)

    @abc.abstractmethod
    def _query(self, x: np.ndarray) -> np.ndarray:
        """Send ``x`` (float32, ``(b, *input_shape)``); probabilities ``(b, C)`` or labels ``(b,)``."""

    def _prepare(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        arr = x.detach().to("cpu", torch.float32).numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)
        if self.input_shape is not None:
            per_sample = int(np.prod(self.input_shape))
            if arr.ndim < 1 or arr.size != arr.shape[0] * per_sample:
                raise ConfigError(f"the black box takes samples of shape {self.input_shape} ({per_sample} values), "
                                 f"got a batch of shape {tuple(arr.shape)}")
            arr = arr.reshape(arr.shape[0], *self.input_shape)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def reserve(self, n: int) -> None:
        """Count ``n`` samples against the budget, or raise :class:`QueryBudgetExceeded`."""
        with self._lock:
            if self.budget is not None and self.queries + n > self.budget:
                raise QueryBudgetExceeded(
                    f"query budget exhausted: {self.queries} of {self.budget} queries used, "
                    f"this call needs {n} more")
            self.queries += n
            self.calls += 1

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Probabilities ``(B, C)`` (float32) for ``output="probabilities"``, else labels ``(B,)`` (int64)."""
        arr = self._prepare(x)
        n = arr.shape[0]
        if n == 0:
            raise ConfigError("empty batch sent to the black box")
        self.reserve(n)
        parts = [self._check(self._query(arr[lo : lo + self.max_batch]), min(self.max_batch, n - lo))
                 for lo in range(0, n, self.max_batch)]
        out = np.concatenate(parts, axis=0)
        return torch.from_numpy(out)

    def _check(self, out: np.ndarray, n: int) -> np.ndarray:
        out = np.asarray(out)
        if self.output == "labels":
            if out.shape != (n,):
                raise BlackBoxError(f"expected {n} labels, the black box returned shape {out.shape}")
            return out.astype(np.int64)
        if out.ndim != 2 or out.shape[0] != n:
            raise BlackBoxError(f"expected ({n}, classes) probabilities, the black box returned shape {out.shape}")
        if not np.all(np.isfinite(out)):
            raise BlackBoxError("the black box returned non-finite probabilities")
        return out.astype(np.float32)

    def labels(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Predicted classes ``(B,)``."""
        out = self(x)
        return out if self.output == "labels" else out.argmax(-1)

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "input_shape": self.input_shape, "output": self.output,
                "budget": self.budget, "queries": self.queries, "calls": self.calls}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class CallableBlackBox(BlackBox):
    """Wrap ``fn(x: torch.Tensor (b, *input_shape)) -> (b, C)`` scores or ``(b,)`` labels.

    ``scores="probabilities"`` passes the output through, ``"logits"`` applies
    softmax first; ``output="labels"`` exposes only argmax labels (or the
    callable's own labels when it returns a 1-D tensor).
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, input_shape: Sequence[int] | None = None,
                 output: str = "probabilities", scores: str = "probabilities", budget: int | None = None,
                 max_batch: int = 4096):
        super().__init__(input_shape=input_shape, output=output, budget=budget, max_batch=max_batch)
        if scores not in ("probabilities", "logits"):
            raise ConfigError(f"scores must be 'probabilities' or 'logits', got {scores!r}")
        self.fn, self.scores = fn, scores

    def _query(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.fn(torch.from_numpy(x))
        out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        if out.ndim == 1:
            if self.output != "labels":
                raise BlackBoxError("the callable returned labels but probabilities were asked for")
            return out
        probs = softmax(out.astype(np.float64)).astype(np.float32) if self.scores == "logits" else out
        return probs.argmax(-1) if self.output == "labels" else probs


class TorchBlackBox(CallableBlackBox):
    """A torch classifier (logits out) behind softmax, in eval mode, without gradients."""

    def __init__(self, model: torch.nn.Module, *, input_shape: Sequence[int], output: str = "probabilities",
                 budget: int | None = None, max_batch: int = 4096):
        model.eval()
        super().__init__(model, input_shape=input_shape, output=output, scores="logits", budget=budget,
                         max_batch=max_batch)


class OnnxBlackBox(BlackBox):
    """An ONNX classifier run by onnxruntime (first input, first output).

    ``scores="logits"`` (the default) applies softmax to the model output;
    use ``"probabilities"`` for a model that already ends in softmax.
    ``input_shape`` defaults to the model's declared sample shape.
    """

    def __init__(self, path: str | os.PathLike, *, output: str = "probabilities", scores: str = "logits",
                 budget: int | None = None, max_batch: int = 4096, input_shape: Sequence[int] | None = None,
                 threads: int | None = None):
        import onnxruntime as ort

        if scores not in ("probabilities", "logits"):
            raise ConfigError(f"scores must be 'probabilities' or 'logits', got {scores!r}")
        if not os.path.isfile(path):
            raise MissingFile(f"ONNX model {path} does not exist")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ConfigError(f"cannot load ONNX model {path}: {err}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        declared = [d if isinstance(d, int) else None for d in inp.shape[1:]]
        if input_shape is None:
            if any(d is None for d in declared):
                raise ConfigError(f"ONNX model {path} has a symbolic sample shape {inp.shape}; pass input_shape")
            input_shape = declared
        super().__init__(input_shape=input_shape, output=output, budget=budget, max_batch=max_batch)
        self.scores = scores
        self.path = os.fspath(path)

    def _query(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self.session.run(None, {self.input_name: x})[0])
        if out.ndim != 2:
            raise BlackBoxError(f"the ONNX model returned shape {out.shape}; a classifier returns (batch, classes)")
        probs = softmax(out.astype(np.float64)).astype(np.float32) if self.scores == "logits" else out
        return probs.argmax(-1) if self.output == "labels" else probs

    @property
    def num_classes(self) -> int | None:
        shape = self.session.get_outputs()[0].shape
        return shape[-1] if isinstance(shape[-1], int) else None
