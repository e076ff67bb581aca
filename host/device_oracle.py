"""DeviceOracle: the Oracle contract answered by a device over a :class:`DeviceLink`.

The device holds θ and the current batch; the host sends seeds, μ and
multipliers and receives float32 losses (``evaluate``), and sends
``(step, seeds, coefficients, lr)`` to update θ in place (``apply_seed_update``,
seed-SGD: ``θ ← θ − lr Σ c_i z(seed_i)``, MeZO, Malladi et al. 2023). A dense
vector crosses the link only to load or read θ.

Compact messages (docs/protocol.md §2): when an evaluate's queries are the
RGE pattern over a seed chain (``RGE(seed_chain=True)``) the host sends
evaluate-chain (seed_0, n, pattern) instead of 5 bytes per query; an update
whose seeds, group and kind are those of the last evaluate on the same device
incarnation goes as update-last (step, lr, coefficients); a batch whose
features are ``u · 2^-k`` with integers u in [0, 255] goes as u8
(load-batch-u8). Otherwise, and always in a replay, the explicit forms.

Recovery (docs/protocol.md §5): every ``checkpoint_every`` updates the host
reads θ back (verified with the device's CRC-32) and keeps it with the step
counter; the updates since then are logged. When the device answers "no
model" / "no batch" (it was reset), the host reloads the model, the
checkpointed θ and step, replays the logged updates and the batch, and
re-sends the request. Updates carry the step counter, so the replay never
applies one twice: a faulty run ends bit-identical to a clean one.

The device's update rounds differently from ``Oracle.apply_seed_update``
(one seed after the other, ``θ_j ← fl32(θ_j + fl32(a_i z_j))`` with
``a_i = fl32(-(lr c_i))``), and its losses are float32: it matches a
TorchOracle to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np
import torch

from edgezo import protocol as P
from edgezo.errors import ConfigError
from edgezo.oracle import Counters, Oracle, OracleError, SeedQueries, SeedUpdate, batch_size_of
from edgezo.params import ParamSpace

from .link import DeviceLink, DeviceReset

__all__ = ["DeviceOracle", "model_spec", "device_param_order", "device_factory", "check_device_recipe"]


def _layers_of(model: torch.nn.Module):
    layers = getattr(model, "layers", None)
    if layers is None:
        raise OracleError("a device runs MLP / TTMLP models (models/mlp.py, models/ttm/), "
                          f"not {type(model).__name__}")
    act = getattr(model, "activation_name", None) or getattr(model, "activation", None)
    if act not in ("relu", "identity"):
        raise OracleError(f"the device implements relu (or identity) activations, not {act!r}")
    return list(layers), act


def model_spec(model: torch.nn.Module, max_batch: int) -> P.ModelSpec:
    """The device description (SET_MODEL) of an MLP or TTMLP."""
    layers, act = _layers_of(model)
    out = []
    for i, layer in enumerate(layers):
        a = act if i < len(layers) - 1 else "identity"
        bias = getattr(layer, "bias", None) is not None
        if isinstance(layer, torch.nn.Linear):
            out.append(P.LayerSpec("dense", (layer.in_features,), (layer.out_features,), (), bias, a))
        elif hasattr(layer, "cores"):
            if max(tuple(layer.in_modes) + tuple(layer.out_modes) + tuple(layer.ranks)) > 255:
                raise OracleError("TT modes and ranks must be < 256 on the device")
            out.append(P.LayerSpec("tt", tuple(layer.in_modes), tuple(layer.out_modes), tuple(layer.ranks), bias, a))
        else:
            raise OracleError(f"layer {i} ({type(layer).__name__}) is not supported on the device")
    return P.ModelSpec(tuple(out), max_batch)


def device_param_order(model: torch.nn.Module) -> list[str]:
    names = []
    for i, layer in enumerate(_layers_of(model)[0]):
        if isinstance(layer, torch.nn.Linear):
            names.append(f"layers.{i}.weight")
        else:
            names += [f"layers.{i}.core{k}" for k in range(layer.num_cores)]
        if getattr(layer, "bias", None) is not None:
            names.append(f"layers.{i}.bias")
    return names


class DeviceOracle(Oracle):
    """Oracle over a device (simulator, host-built firmware, QEMU, a real board)."""

    backend = "device"

    def __init__(self, model: torch.nn.Module, loss_fn=None, *, link: DeviceLink | str, groups=None,
                 max_batch: int = 64, checkpoint_every: int = 20, timeout: float = 2.0, retries: int = 20,
                 frame_bytes: int | None = None, compact: bool = True, predictor=None):
        self.model = model
        #: ``predictor(x, flat_theta) -> outputs`` for :meth:`predict` when the device's arithmetic is not the
        #: host model's (the RTL device's int8 datapath, docs/rtl.md); None: the host model in float32
        self.predictor = predictor
        self.space = ParamSpace(model, groups)
        self.layout = self.space.layout
        off = 0
        for name in device_param_order(model):
            e = self.layout.entry(name)
            if e.offset != off:
                raise OracleError(f"parameter groups reorder the flat vector ({name} at {e.offset}, the device "
                                  f"stores it at {off}); use groups=None or 'per_tensor'")
            off += e.numel
        self.link = link if isinstance(link, DeviceLink) else DeviceLink(link, timeout=timeout, retries=retries)
        self.counters = Counters()
        self.spec = model_spec(model, max_batch)
        self.checkpoint_every = checkpoint_every
        self.compact = bool(compact)
        self._last_eval = None  # (kind, offset, count, seeds) of the device's last evaluate, this incarnation
        info = self.link.hello()
        if info["version"] != P.VERSION:
            raise OracleError(f"device speaks protocol v{info['version']}, host v{P.VERSION}")
        self.info = info
        self.compact = self.compact and info["compact"]  # a device without 0x09-0x0B gets the explicit forms
        # frame_bytes: smaller frames than the device allows (a noisy link loses fewer whole frames)
        self.max_body = P.max_body(min(info["max_frame_bytes"], frame_bytes or info["max_frame_bytes"]))
        self.link.max_frame_bytes = info["max_frame_bytes"]
        self.step = 0
        self._log: list[bytes] = []
        self._ckpt: tuple[int, np.ndarray] | None = None
        self._batch_key = None
        self._batch_bytes: tuple[int, int, bytes] | None = None
        self._theta_cache: torch.Tensor | None = None
        self.resets = 0
        self.device_ram = 0
        self._restore(self.space.get_flat().detach().cpu().numpy().astype(np.float32), 0, [])

    # ------------------------------------------------------------ device state
    def _load(self, theta: np.ndarray, step: int) -> None:
        body = self.link.request(P.SET_MODEL, self.spec.encode())
        n, self.device_ram = struct.unpack("<II", body)
        if n != self.layout.dim:
            raise OracleError(f"device counts {n} parameters, host {self.layout.dim}")
        per = (self.max_body - 4) // 4
        raw = theta.astype("<f4")
        for lo in range(0, raw.size, per):
            self.link.request(P.WRITE_WEIGHTS, struct.pack("<I", lo) + raw[lo:lo + per].tobytes())
        self.link.request(P.CHECKPOINT, P.CKPT_REQ.pack(1, step))
        self.step = step
        self._ckpt = (step, raw.copy())
        self._log = []
        self._theta_cache = None
        self._batch_key = None
        self._last_eval = None

    def _recover(self) -> None:
        """The device was reset: reload the checkpoint, replay the logged updates (again if it resets meanwhile)."""
        self.resets += 1
        step, theta = self._ckpt
        log = list(self._log)
        self._restore(theta, step, log)

    def _restore(self, theta: np.ndarray, step: int, log: list[bytes]) -> None:
        for _ in range(10):
            try:
                self._load(theta, step)
                for body in log:
                    self.link.request(P.UPDATE, body)
            except DeviceReset:
                self.resets += 1
                continue
            self.step = step + len(log)
            self._log = log
            return
        raise OracleError("the device keeps resetting while its state is reloaded")

    def _call(self, ftype: int, body: bytes, *, needs_batch: bool = False) -> bytes:
        for _ in range(5):
            try:
                if needs_batch:
                    self._upload_batch()
                return self.link.request(ftype, body)
            except DeviceReset:
                self._recover()
        raise OracleError("the device keeps resetting")

    def checkpoint(self) -> None:
        """Read θ back, verify it with the device's CRC-32, keep it with the step; clear the update log."""
        theta = self._read_all()
        step, n, crc = P.CKPT_RESP.unpack(self._call(P.CHECKPOINT, P.CKPT_REQ.pack(0, 0)))
        if crc != zlib.crc32(theta.tobytes()) or step != self.step:
            raise OracleError(f"checkpoint mismatch (device step {step}, host {self.step}; CRC)")
        self._ckpt = (step, theta)
        self._log = []

    def _read_all(self) -> np.ndarray:
        per = self.max_body // 4
        parts = []
        for lo in range(0, self.layout.dim, per):
            cnt = min(per, self.layout.dim - lo)
            parts.append(np.frombuffer(self._call(P.READ_WEIGHTS, P.READ_REQ.pack(lo, cnt)), "<f4"))
        return np.concatenate(parts).astype("<f4")

    # ------------------------------------------------------------ batches
    def upload(self, batch) -> None:
        """Send ``batch`` to the device now (evaluate sends it lazily, once per distinct batch)."""
        self._set_batch(batch)
        self._upload_batch()

    def _upload_batch(self) -> None:
        if self._batch_key is not None:
            return
        bid, total, feats, data, scale = self._batch_bytes
        if scale is None:
            ftype, head = P.LOAD_BATCH, lambda lo: P.BATCH_HEAD.pack(bid, total, feats, lo)
        else:
            ftype, head = P.LOAD_BATCH_U8, lambda lo: P.BATCH_U8_HEAD.pack(bid, total, feats, scale, lo)
        per = self.max_body - len(head(0))
        for lo in range(0, len(data), per):
            self.link.request(ftype, head(lo) + data[lo:lo + per])
        self._batch_key = bid

    def _set_batch(self, batch) -> None:
        x, y = batch[0], batch[1]
        x = x.detach().reshape(x.shape[0], -1).to(torch.float32).cpu().numpy().astype("<f4")
        yb = y.detach().cpu().numpy()
        if x.shape[1] != self.spec.in_features:
            raise ValueError(f"batch has {x.shape[1]} features, the model takes {self.spec.in_features}")
        if x.shape[0] > self.spec.max_batch:
            raise ValueError(f"batch of {x.shape[0]} exceeds the device's max batch {self.spec.max_batch}")
        if yb.min() < 0 or yb.max() > 255:
            raise ValueError("the device takes class labels in [0, 255]")
        scale = P.u8_scale(x) if self.compact else None
        xb = x.tobytes() if scale is None else np.round(x / np.float32(scale)).astype(np.uint8).tobytes()
        data = xb + yb.astype(np.uint8).tobytes()
        bid = zlib.crc32(data) ^ (0 if scale is None else 0x5A5A5A5A)
        if self._batch_bytes is None or self._batch_bytes[0] != bid or self._batch_bytes[3] != data:
            self._batch_bytes = (bid, x.shape[0], x.shape[1], data, scale)
            self._batch_key = None

    # ------------------------------------------------------------ Oracle
    def evaluate(self, queries, batch) -> torch.Tensor:
        if not isinstance(queries, SeedQueries):
            raise OracleError("the device answers seed queries only (use the rge estimator)")
        if queries.kind not in P.KIND_IDS:
            raise OracleError(f"the device generates {', '.join(P.KIND_IDS)} directions, not {queries.kind!r}")
        self._set_batch(batch)
        g = self.layout.group(queries.group)
        mu, mults = P.scale_multipliers(queries.scales)
        out = []
        seeds = [int(s) for s in queries.seeds]
        self._last_eval = None  # unknown until this evaluate has been answered
        chain = P.chain_pattern(seeds, mults) if self.compact and len(seeds) <= self.max_body // 4 else None
        if chain is not None:
            body = P.pack_evaluate_chain(queries.kind, g.offset, g.numel, mu, *chain)
            resp = self._call(P.EVALUATE_CHAIN, body, needs_batch=True)
            out += struct.unpack(f"<{len(resp) // 4}f", resp)
            self._last_eval = (queries.kind, g.offset, g.numel, P.distinct_seeds(seeds, mults))
        else:
            per = min((self.max_body - P.EVAL_HEAD.size) // 5, self.max_body // 4, 255)
            for lo in range(0, len(seeds), per):
                body = P.pack_evaluate(queries.kind, g.offset, g.numel, mu, seeds[lo:lo + per], mults[lo:lo + per])
                resp = self._call(P.EVALUATE, body, needs_batch=True)
                out += struct.unpack(f"<{len(resp) // 4}f", resp)
                self._last_eval = (queries.kind, g.offset, g.numel, P.distinct_seeds(seeds[lo:lo + per],
                                                                                      mults[lo:lo + per]))
        self.counters.add(len(queries), batch_size_of(batch))
        return torch.tensor(out, dtype=torch.float64)

    def apply_seed_update(self, update: SeedUpdate, lr: float) -> None:
        if update.kind not in P.KIND_IDS:
            raise OracleError(f"the device generates {', '.join(P.KIND_IDS)} directions, not {update.kind!r}")
        g = self.layout.group(update.group)
        seeds = [int(s) for s in update.seeds]
        coeffs = [float(c) for c in update.coeffs]
        last = (update.kind, g.offset, g.numel, seeds)
        per = min((self.max_body - P.UPDATE_HEAD.size) // 8, 255)
        if self.compact and self._last_eval == last and len(seeds) <= per:  # its explicit form fits one frame
            step = self.step + 1
            body = P.pack_update(step, update.kind, g.offset, g.numel, lr, seeds, coeffs)
            self._log.append(body)  # a replay sends the explicit form
            try:
                self.link.request(P.UPDATE_LAST, P.pack_update_last(step, lr, coeffs))
            except DeviceReset:  # reset since the evaluate: recover (replays this update), then confirm
                self._recover()
                self._call(P.UPDATE, body)
            self.step = step
        else:
            for lo in range(0, len(seeds), per):
                step = self.step + 1
                body = P.pack_update(step, update.kind, g.offset, g.numel, lr, seeds[lo:lo + per],
                                     coeffs[lo:lo + per])
                self._log.append(body)
                self._call(P.UPDATE, body)  # a reset meanwhile: the recovery replays it (and sets self.step)
                self.step = step
        self._theta_cache = None
        if self.checkpoint_every and len(self._log) >= self.checkpoint_every:
            self.checkpoint()

    def get_flat(self) -> torch.Tensor:
        if self._theta_cache is None:
            self._theta_cache = torch.from_numpy(self._read_all().astype(np.float32))
        return self._theta_cache.clone()

    def set_flat(self, values: torch.Tensor) -> None:
        self._restore(values.detach().cpu().to(torch.float32).numpy(), self.step, [])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.predictor is not None:
            return self.predictor(x, self.get_flat())
        self.space.set_flat(self.get_flat().to(self.space.dtype))
        with torch.no_grad():
            return self.model(x)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "step" in state:
            self._call(P.CHECKPOINT, P.CKPT_REQ.pack(1, int(state["step"])))
            self.step = int(state["step"])
            self._ckpt = (self.step, self._ckpt[1])

    @property
    def wire(self) -> dict:
        return self.link.stats.as_dict()


def check_device_recipe(recipe) -> None:
    """A device trains with RGE (rademacher/gaussian) and seed-SGD; raise ConfigError otherwise."""
    from edgezo.recipes import phases_of

    for ph in phases_of(recipe):
        est = ph.estimator
        kind = getattr(est, "name", type(est).__name__).lower()
        if "rge" not in kind:
            raise ConfigError(f"recipe {recipe.name}: phase {ph.name!r} uses the {kind} estimator; a device answers "
                              "seed queries only: use estimator.kind = \"rge\" (e.g. --set estimator.kind=rge)")
        if getattr(est, "direction", "rademacher") not in ("rademacher", "gaussian"):
            raise ConfigError(f"recipe {recipe.name}: the device generates rademacher or gaussian directions")
        if ph.optimizer.get("kind") != "seed-sgd":
            raise ConfigError(f"recipe {recipe.name}: phase {ph.name!r} uses the {ph.optimizer.get('kind')} "
                              "optimizer; a device keeps no optimizer state: use --set optimizer.kind=seed-sgd")


def device_factory(link, *, checkpoint_every: int = 20, predictor_for=None):
    """An ``oracle_factory`` building a :class:`DeviceOracle` on ``link`` (a port URL or DeviceLink).

    ``predictor_for(oracle, model)`` may return the ``predictor`` that scores test metrics with the
    device's own arithmetic (e.g. an int8 datapath), or None to predict in float32 on the host.
    """
    def factory(model, loss_fn, *, groups=None, example_batch=None, **options):
        max_batch = int(example_batch[0].shape[0]) if example_batch is not None else 64
        oracle = DeviceOracle(model, loss_fn, link=link, groups=groups, max_batch=max_batch,
                              checkpoint_every=checkpoint_every)
        if predictor_for is not None:
            oracle.predictor = predictor_for(oracle, model)
        return oracle

    return factory
