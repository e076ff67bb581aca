"""Oracles over an exported loss graph; :class:`ORTOracle` runs it in ONNX Runtime.

The graph (see ``edgezo.export.onnx``) takes the data ``x``, ``y`` and every
trainable parameter as inputs and returns ``loss`` and ``logits``. The oracle
keeps θ as a flat host vector laid out by the engine's :class:`ParamLayout`;
a query ``θ + s·z(seed)`` (or ``θ + δ e_j``) is formed on the host, split into
the parameter inputs and fed to the runtime — the graph itself has no random
operators. Plain inference sessions are all forward-only training needs
(ONNX Runtime's training package is backprop-only, docs/methods/zo-basics.md).

Evaluation paths (``path="auto"`` times them on the first call for each query
shape and keeps the fastest, like the TorchOracle):

* ``"sequential"`` — one ``session.run`` per point;
* ``"iobinding"`` — one run per point through an IO binding whose parameter
  inputs are persistent host buffers (bound once; each point copies its row in)
  and whose loss output is a preallocated buffer;
* ``"stacked"`` — one run of the stacked graph, whose parameter inputs carry a
  leading perturbation axis ``(q, *shape)``: all q points in one call.

The host optimizer path: :meth:`optimizer_parameters` is the flat θ itself,
which every evaluation reads, so :meth:`after_step` has nothing to copy.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from edgezo.errors import ConfigError, MissingDependency

from ..direction_cache import cached_directions
from ..oracle import Batch, CoordQueries, Counters, Oracle, OracleError, Queries, SeedQueries, SeedUpdate
from ..params import ParamLayout

__all__ = ["GraphOracle", "ORTOracle"]


class GraphOracle(Oracle):
    """Host-θ oracle over an exported loss graph (shared by the ORT and TVM oracles).

    Args:
        layout: the engine's parameter layout (flat order, groups).
        param_inputs: parameter name (as in ``layout``) → graph input name.
        theta: the initial flat parameter vector (its dtype is the graph's).
        path: ``"auto"`` or one of :attr:`PATHS`.
        max_stack_elems: bound on ``q_chunk × dim`` of one stacked block. The
            default (2^20 values, 4 MiB in float32) keeps a chunk's block in
            cache between filling it and running the graph on it.
        data_inputs / loss_output / logits_output: graph names.
    """

    PATHS: tuple[str, ...] = ("sequential",)

    def __init__(self, layout: ParamLayout, param_inputs: Mapping[str, str], theta: torch.Tensor, *,
                 path: str = "auto", max_stack_elems: int = 2**20, data_inputs: tuple[str, str] = ("x", "y"),
                 loss_output: str = "loss", logits_output: str = "logits"):
        missing = [e.name for e in layout.entries if e.name not in param_inputs]
        if missing:
            raise ValueError(f"param_inputs has no graph input for the parameters {missing}")
        theta = torch.as_tensor(theta).detach().cpu().reshape(-1)
        if theta.numel() != layout.dim:
            raise ValueError(f"theta has {theta.numel()} entries, the layout has {layout.dim}")
        self.layout = layout
        self.param_inputs = dict(param_inputs)
        self.theta = theta.clone().contiguous()
        self.x_name, self.y_name = data_inputs
        self.loss_output, self.logits_output = loss_output, logits_output
        self.path = path
        self.max_stack_elems = int(max_stack_elems)
        self.counters = Counters()
        self.choices: dict[str, str] = {}
        self.timings: dict[str, dict[str, float]] = {}
        self._buffers: dict[int, dict[str, torch.Tensor]] = {}
        # (graph input name, flat offset, numel, shape) in flat order
        self._slices = [(self.param_inputs[e.name], e.offset, e.numel, e.shape) for e in layout.entries]

    def _check_path(self) -> None:
        if self.path != "auto" and self.path not in self.available_paths():
            raise ConfigError(f"evaluation path {self.path!r} is not available for this {self.backend} oracle; "
                             f"use 'auto' or one of {self.available_paths()}")

    # --- parameters -----------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    def get_flat(self) -> torch.Tensor:
        return self.theta.clone()

    def set_flat(self, values: torch.Tensor) -> None:
        values = torch.as_tensor(values)
        if values.dim() != 1 or values.numel() != self.dim:
            raise ValueError(f"expected a 1-D tensor of {self.dim} values, got shape {tuple(values.shape)}")
        with torch.no_grad():
            self.theta.copy_(values.detach().to(dtype=self.theta.dtype, device="cpu"))

    def optimizer_parameters(self) -> list[torch.Tensor]:
        return [self.theta]

    def set_grad(self, grad: torch.Tensor) -> None:
        if grad.dim() != 1 or grad.numel() != self.dim:
            raise ValueError(f"expected a 1-D gradient of {self.dim} values, got shape {tuple(grad.shape)}")
        self.theta.grad = grad.detach().to(dtype=self.theta.dtype, device="cpu").clone()

    def after_step(self) -> None:
        """Nothing to push: every evaluation reads the flat θ the optimizer just stepped."""

    def apply_seed_update(self, update: SeedUpdate, lr: float) -> None:
        g = self.layout.group(update.group)
        z = cached_directions(update.seeds, g.offset, g.numel, update.kind, "cpu", self.theta.dtype)
        coeffs = torch.tensor(update.coeffs, dtype=z.dtype)
        with torch.no_grad():
            self.theta[g.offset : g.stop] -= lr * (coeffs @ z)

    # --- helpers ----------------------------------------------------------------
    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """``{graph input: array}`` for a flat vector ``(dim,)`` or block ``(q, dim)`` (contiguous copies)."""
        lead = flat.shape[:-1]
        return {name: np.ascontiguousarray(flat[..., off : off + n].reshape(*lead, *shape))
                for name, off, n, shape in self._slices}

    def _blocks(self, queries: Queries, lo: int, hi: int) -> dict[str, torch.Tensor]:
        """Rows ``lo:hi`` of the perturbed points, per graph input: ``{name: (hi-lo, *shape)}``.

        Built parameter by parameter (θ's slice repeated, plus the perturbation
        where the query's group or coordinate falls inside it), so no flat
        ``(q, dim)`` block is split and copied again. The returned tensors are
        buffers owned by the oracle, valid until the next call.
        """
        theta = self.theta.detach()
        n = hi - lo
        seed = isinstance(queries, SeedQueries)
        if seed:
            g = self.layout.group(queries.group)
            z = cached_directions(queries.seeds, g.offset, g.numel, queries.kind, "cpu", theta.dtype)[lo:hi]
            scales = torch.tensor(queries.scales[lo:hi], dtype=theta.dtype).unsqueeze(1)
        elif isinstance(queries, CoordQueries):
            coords = torch.tensor(queries.coords[lo:hi], dtype=torch.long)
            if n and (int(coords.min()) < 0 or int(coords.max()) >= self.dim):
                raise IndexError(f"coordinate out of range [0, {self.dim})")
            deltas = torch.tensor(queries.deltas[lo:hi], dtype=theta.dtype)
        else:
            raise TypeError(f"unknown query type {type(queries).__name__}")
        out = {}
        buffers = self._buffers.get(n)
        if buffers is None:
            # reused while q stays the same: no fresh pages (mmap + zeroing) for the block on every call
            self._buffers = {n: {name: torch.empty(n, numel, dtype=theta.dtype) for name, _, numel, _ in self._slices}}
            buffers = self._buffers[n]
        for name, off, numel, shape in self._slices:
            blk = buffers[name]
            blk.copy_(theta[off : off + numel].unsqueeze(0).expand(n, numel))
            if seed:
                a, b = max(off, g.offset), min(off + numel, g.stop)
                if a < b:
                    blk[:, a - off : b - off] += scales * z[:, a - g.offset : b - g.offset]
            else:
                inside = ((coords >= off) & (coords < off + numel)).nonzero().reshape(-1)
                if inside.numel():
                    blk[inside, coords[inside] - off] += deltas[inside]
            out[name] = blk.view(n, *shape)
        return out

    def _data(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        x, y = batch[0], batch[1]
        x = x.detach().cpu().to(self.theta.dtype).contiguous().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if isinstance(y, torch.Tensor):
            y = y.detach().cpu()
            y = (y.to(self.theta.dtype) if y.is_floating_point() else y.to(torch.int64)).contiguous().numpy()
        return x, np.asarray(y)

    # --- backend hooks ------------------------------------------------------------
    def available_paths(self) -> list[str]:
        return [p for p in self.PATHS if p != "stacked" or self.has_stacked]

    @property
    def has_stacked(self) -> bool:
        return False

    @abc.abstractmethod
    def _run(self, path: str, blocks: dict[str, torch.Tensor], x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Losses (q,) of the points ``blocks`` (``{input: (q, *shape)}``) on path ``path``."""

    @abc.abstractmethod
    def _outputs(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
        """Named outputs of the single-point graph at ``flat``."""

    # --- evaluation -----------------------------------------------------------------
    def _choose(self, key: str, blocks: dict[str, torch.Tensor], x: np.ndarray, y: np.ndarray) -> str:
        if self.path != "auto":
            return self.path
        if key in self.choices and self.choices[key] in self.available_paths():
            return self.choices[key]
        timings = {}
        for path in self.available_paths():
            self._run(path, blocks, x, y)  # warm-up
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                self._run(path, blocks, x, y)
                best = min(best, time.perf_counter() - t0)
            timings[path] = best * 1e6
        choice = min(timings, key=timings.get)
        self.choices[key], self.timings[key] = choice, timings
        return choice

    def evaluate(self, queries: Queries, batch: Batch) -> torch.Tensor:
        x, y = self._data(batch)
        q = len(queries)
        chunk = max(1, min(q, self.max_stack_elems // max(1, self.dim)))
        kind = "seed" if isinstance(queries, SeedQueries) else "coord"
        out = []
        for lo in range(0, q, chunk):
            hi = min(q, lo + chunk)
            blocks = self._blocks(queries, lo, hi)
            path = self._choose(f"{kind}:q={hi - lo}:b={x.shape[0]}", blocks, x, y)
            out.append(np.asarray(self._run(path, blocks, x, y), dtype=np.float64).reshape(-1))
        self.counters.add(q, int(x.shape[0]))
        return torch.from_numpy(np.concatenate(out) if out else np.zeros(0))

    def loss(self, batch: Batch) -> float:
        x, y = self._data(batch)
        (value,) = self._outputs(self.theta.numpy(), x, y, (self.loss_output,))
        self.counters.add(1, int(x.shape[0]))
        return float(value)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        xn = x.detach().cpu().to(self.theta.dtype).contiguous().numpy()
        y = self._dummy_targets(xn.shape[0])
        (logits,) = self._outputs(self.theta.numpy(), xn, y, (self.logits_output,))
        return torch.from_numpy(np.array(logits))

    def _dummy_targets(self, n: int) -> np.ndarray:
        """Targets the graph needs as an input even when only the logits are asked for."""
        shape, dtype = self.target_spec
        return np.zeros((n, *shape), dtype=dtype)

    @property
    def target_spec(self) -> tuple[tuple[int, ...], np.dtype]:
        return (), np.dtype(np.int64)

    def autograd(self, batch: Batch) -> tuple[float, torch.Tensor]:
        raise OracleError(f"the {self.backend} oracle runs a forward-only graph; the first-order baseline "
                          "(--estimator fo) needs the torch backend")

    def state_dict(self) -> dict[str, Any]:
        return {"choices": dict(self.choices)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.choices.update(state.get("choices", {}))


def _ort_dtype(type_str: str) -> np.dtype:
    """``'tensor(float)'`` → numpy dtype."""
    table = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(float16)": np.float16}
    return np.dtype(table.get(type_str, np.float32))


class ORTOracle(GraphOracle):
    """The loss graph run by ONNX Runtime inference sessions.

    Args:
        model: the single-point graph (ONNX bytes, a path, or an ``onnx.ModelProto``).
        layout, param_inputs, theta: see :class:`GraphOracle`.
        stacked: the graph with a leading perturbation axis (optional).
        threads: intra-op threads per session (default: ``torch.get_num_threads()``,
            so that both backends use the same cores).
        providers: ONNX Runtime execution providers (default: CPU).
    """

    backend = "onnxruntime"
    PATHS = ("sequential", "iobinding", "stacked")

    def __init__(self, model: Any, layout: ParamLayout, param_inputs: Mapping[str, str], theta: torch.Tensor, *,
                 stacked: Any = None, threads: int | None = None, providers: list[str] | None = None, **options):
        super().__init__(layout, param_inputs, theta, **options)
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - a core dependency
            raise MissingDependency("the onnxruntime backend needs onnxruntime: pip install onnxruntime") from err
        self._ort = ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.threads = opts.intra_op_num_threads
        self.providers = providers or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(_as_ort_source(model), opts, providers=self.providers)
        self.stacked_session = (ort.InferenceSession(_as_ort_source(stacked), opts, providers=self.providers)
                                if stacked is not None else None)
        self._check_graph(self.session, stacked=False)
        if self.stacked_session is not None:
            self._check_graph(self.stacked_session, stacked=True)
        inputs = {i.name: i for i in self.session.get_inputs()}
        y_info = inputs[self.y_name]
        self._target_spec = (tuple(int(d) for d in y_info.shape[1:] if isinstance(d, int)), _ort_dtype(y_info.type))
        self._binding = None
        self._check_path()

    def _check_graph(self, session, *, stacked: bool) -> None:
        names = {i.name for i in session.get_inputs()}
        need = {self.x_name, self.y_name, *self.param_inputs.values()}
        if names != need:
            kind = "stacked graph" if stacked else "graph"
            raise ValueError(f"the {kind}'s inputs {sorted(names)} do not match the data inputs and parameters "
                             f"{sorted(need)}; export the model with edgezo.export.onnx.export_onnx")
        outs = {o.name for o in session.get_outputs()}
        if self.loss_output not in outs:
            raise ValueError(f"the graph has no output {self.loss_output!r} (outputs: {sorted(outs)})")

    @property
    def has_stacked(self) -> bool:
        return self.stacked_session is not None

    @property
    def target_spec(self):
        return self._target_spec

    def _outputs(self, flat, x, y, names):
        return self.session.run(list(names), {self.x_name: x, self.y_name: y, **self.split(flat)})

    def _bound(self):
        """The IO binding: persistent parameter buffers and a loss buffer, bound once."""
        if self._binding is None:
            ort = self._ort
            binding = self.session.io_binding()
            buffers = {}
            for name, _, _, shape in self._slices:
                buffers[name] = np.zeros(shape, dtype=self.theta.numpy().dtype)
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(buffers[name]))
            out = np.zeros((), dtype=self.theta.numpy().dtype)
            binding.bind_ortvalue_output(self.loss_output, ort.OrtValue.ortvalue_from_numpy(out))
            self._binding = (binding, buffers, out, ort.RunOptions())
        return self._binding

    def _run(self, path, blocks, x, y):
        arrays = {name: b.numpy() for name, b in blocks.items()}
        if path == "stacked":
            return self.stacked_session.run([self.loss_output], {self.x_name: x, self.y_name: y, **arrays})[0]
        n = next(iter(arrays.values())).shape[0]
        out = np.empty(n)
        if path == "iobinding":
            binding, buffers, loss, run_options = self._bound()
            binding.bind_cpu_input(self.x_name, x)
            binding.bind_cpu_input(self.y_name, y)
            for i in range(n):
                for name, buf in buffers.items():
                    np.copyto(buf, arrays[name][i])
                self.session.run_with_iobinding(binding, run_options)
                out[i] = loss
            return out
        for i in range(n):
            out[i] = self.session.run([self.loss_output], {self.x_name: x, self.y_name: y,
                                                           **{k: a[i] for k, a in arrays.items()}})[0]
        return out


def _as_ort_source(model: Any):
    """ONNX Runtime takes bytes or a path; an ``onnx.ModelProto`` is serialized."""
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    return str(model)
