"""ZO-AE-DS end to end: stages, checkpoints, certification and artifacts.

Stages (Zhang et al., "How to robustify black-box ML models? A zeroth-order
optimization perspective", ICLR 2022, arXiv:2203.14195; denoised smoothing of
Salman et al., NeurIPS 2020):

1. ``labels`` — ``y = argmax f(x)`` for the training images (1 query each).
2. ``autoencoder`` — pre-train Enc/Dec on reconstruction ``‖Dec(Enc(x)) − x‖²``
   (defender's data, no queries). The decoder is frozen afterwards.
3. ``warmup`` — warm-start the denoiser with ``‖D_θ(x + δ) − x‖²`` (no queries).
4. ``stability`` — minimise ``CE(f(Dec(Enc(D_θ(x + δ)))), y)`` over θ and the
   encoder. The black box gives no gradient: ``a ≈ ∇_z L`` at
   ``z = Enc(D_θ(x + δ))`` comes from the engine's RGE/CGE over a
   :class:`~.latent_oracle.LatentOracle`; then ``∇_θ [aᵀ Enc(D_θ(x + δ))]``
   is backpropagated through the defender's own modules. ZO-DS does the same in
   pixel space (no autoencoder); FO-DS backpropagates through a white-box f.
5. ``certify`` — Cohen et al.'s CERTIFY of ``f ∘ front end`` on the test images.
6. ``export`` — ONNX graphs of the front end, ``certification.json``,
   ``manifest.json`` and ``metrics.json``.

Determinism and resume: batch order depends on (seed, stage, epoch), training
noise on (seed, stage, step), ZO directions on (seed, step) and certification
noise on (seed, image), and a checkpoint (``checkpoint.pt``, atomic) holds the
stage, step, modules, optimizer, labels, certificates and query counts — so a
run stopped anywhere (:class:`Interrupted`, a crash) continues where its last
checkpoint was and reaches the same result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgezo import checkpoint
from edgezo.errors import CheckpointError, EdgezoError

from ... import __version__, io
from ...data import epoch_permutation
from ...estimators import CGE, RGE
from ...models.denoiser import ConvAutoencoder, DnCNN
from ...trainer import peak_rss_mb
from .certify import certified_accuracy, certify, image_generator
from .config import RobustifyConfig
from .frontend import DenoiserEncoder, Frontend, trainable_modules
from .latent_oracle import LatentOracle
from .meter import _Meter
from .onnx_export import export_module

STAGES = ("labels", "autoencoder", "warmup", "stability", "certify", "export")
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KIND = "robustify"


class Interrupted(EdgezoError, RuntimeError):
    """``should_stop()`` asked the run to stop; the checkpoint holds everything done so far."""


def _stage_seed(seed: int, stage: str, *more: int) -> int:
    return int(np.random.SeedSequence([int(seed), STAGES.index(stage), *map(int, more)]).generate_state(1)[0])


class Robustifier:
    """One ZO-AE-DS / ZO-DS / FO-DS run over a black box.

    Args:
        config: :class:`RobustifyConfig`.
        blackbox: a :class:`~.blackbox.BlackBox` (probabilities for ZO training;
            labels suffice for FO-DS and certification).
        x_train: the defender's training images ``(N, C, H, W)`` in the
            black box's input range (no labels needed).
        x_test, y_test: images to certify and their true labels.
        out_dir: where the checkpoint and artifacts go.
        num_classes: classes of the black box.
        classifier: the white-box model (logits) — FO-DS only.
        init: ``{"denoiser": state_dict, "autoencoder": state_dict}`` to start from.
        progress: called with a dict after every step / certified image.
        should_stop: polled between steps; True stops with :class:`Interrupted`.
        queries_before: queries spent by earlier sessions of this run as counted
            by the caller (defaults to the checkpoint's count); the budget covers them.
    """

    def __init__(self, config: RobustifyConfig, blackbox, x_train: torch.Tensor, x_test: torch.Tensor,
                 y_test: torch.Tensor, *, out_dir: str | Path, num_classes: int,
                 classifier: torch.nn.Module | None = None, init: dict[str, Any] | None = None,
                 progress: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
                 queries_before: int | None = None):
        if x_train.dim() != 4 or x_test.dim() != 4 or x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(f"images must be (N, C, H, W) with one shape, got train {tuple(x_train.shape)} "
                             f"and test {tuple(x_test.shape)}")
        if y_test.shape != (x_test.shape[0],):
            raise ValueError(f"y_test must hold one label per test image, got {tuple(y_test.shape)}")
        if x_train.shape[0] < 1 or x_test.shape[0] < 1:
            raise ValueError("need at least one training and one test image")
        if config.method == "fo-ds" and classifier is None:
            raise ValueError("FO-DS is the white-box baseline: pass the classifier module")
        self.config = config
        self.blackbox = blackbox
        self.x_train, self.x_test, self.y_test = x_train.float(), x_test.float(), y_test.long()
        self.image_shape = tuple(int(s) for s in x_train.shape[1:])
        self.out_dir = Path(out_dir)
        self.num_classes = int(num_classes)
        self.classifier = classifier
        self.init = init or {}
        self.progress = progress or (lambda info: None)
        self.should_stop = should_stop or (lambda: False)
        self.queries_before = queries_before
        self.plan = config.check_budget(x_train.shape[0], x_test.shape[0], int(np.prod(self.image_shape)))
        self._build()

    # --- construction -------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            denoiser = DnCNN(self.image_shape[0], cfg.denoiser_width, cfg.denoiser_depth)
            autoencoder = (ConvAutoencoder(self.image_shape, cfg.latent_dim, cfg.ae_width)
                           if cfg.method == "zo-ae-ds" else None)
        if "denoiser" in self.init:
            denoiser.load_state_dict(self.init["denoiser"])
        if autoencoder is not None and "autoencoder" in self.init:
            autoencoder.load_state_dict(self.init["autoencoder"])
        self.frontend = Frontend(denoiser, autoencoder)
        self.state: dict[str, Any] = {
            "config": cfg.as_dict(), "data": self._data_signature(),
            "stage": STAGES[0], "step": 0, "optimizer": None, "labels": None, "certificates": [],
            "queries": {s: 0 for s in STAGES} | {"unrecorded": 0}, "history": [], "truncated_at": None,
            "forward_passes": 0, "samples_forwarded": 0, "wall_s": 0.0, "sessions": 0, "session_starts": [],
        }

    def _data_signature(self) -> dict:
        return {"n_train": int(self.x_train.shape[0]), "n_test": int(self.x_test.shape[0]),
                "image_shape": list(self.image_shape),
                "checksum": float(self.x_train.double().sum() + self.x_test.double().sum())}

    # --- checkpoints ----------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    def _settings(self) -> dict:
        return {"config": self.config.as_dict(), "data": self._data_signature()}

    def _save(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.state["frontend"] = self.frontend.state_dict()
        self.state["optimizer"] = optimizer.state_dict() if optimizer is not None else None
        self._sync_queries()
        self.state["wall_s"] = self._wall()
        checkpoint.save(self.checkpoint_path, CHECKPOINT_KIND, self.state, settings=self._settings())

    def _load(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = checkpoint.load(self.checkpoint_path, CHECKPOINT_KIND, settings=self._settings(),
                                required=("frontend", "stage", "step", "queries", "history"))
        try:
            self.frontend.load_state_dict(state["frontend"])
        except (RuntimeError, TypeError, KeyError) as err:
            raise CheckpointError(f"{self.checkpoint_path}: its front end does not fit this run ({err})") from None
        self.state = state
        return True

    def _sync_queries(self) -> None:
        used = self._meter.used - self._meter_mark
        self._meter_mark = self._meter.used
        self.state["queries"][self.state["stage"]] += used

    def queries_used(self) -> int:
        return sum(self.state["queries"].values()) + (self._meter.used - self._meter_mark)

    def _wall(self) -> float:
        return self._wall_before + (time.perf_counter() - self._t0)

    # --- running ---------------------------------------------------------------
    def run(self, *, resume: bool = True, until: str | None = None) -> dict:
        """Run (or continue) every stage, or stop after stage ``until``; returns the report so far."""
        if until is not None and until not in STAGES:
            raise ValueError(f"unknown stage {until!r}; stages: {', '.join(STAGES)}")
        self._t0 = time.perf_counter()
        resumed = self._load() if resume else False
        if not resume and self.checkpoint_path.exists():
            self.checkpoint_path.unlink()
        recorded = sum(self.state["queries"].values())
        if self.queries_before is not None and self.queries_before > recorded:
            self.state["queries"]["unrecorded"] += self.queries_before - recorded
        self._wall_before = float(self.state["wall_s"])
        self.state["sessions"] += 1
        self.state["session_starts"].append({"stage": self.state["stage"], "step": self.state["step"],
                                             "queries": sum(self.state["queries"].values())})
        spent = sum(self.state["queries"].values())
        budget = self.config.query_budget
        self._meter = _Meter(self.blackbox, None if budget is None else max(0, budget - spent))
        self._meter_mark = 0
        self.resumed = resumed
        start = STAGES.index(self.state["stage"])
        for stage in STAGES[start:]:
            if stage != self.state["stage"]:
                self._sync_queries()
                self.state.update(stage=stage, step=0, optimizer=None)
            getattr(self, f"_stage_{stage}")()
            if stage == until:
                self._save()
                break
        return self.report

    def _notify(self, total: int, loss: float | None = None) -> None:
        stage = self.state["stage"]
        k = STAGES.index(stage)
        frac = (k + (self.state["step"] / total if total else 1.0)) / len(STAGES)
        self.progress({"stage": stage, "step": self.state["step"], "total": total, "fraction": round(frac, 4),
                       "queries_used": self.queries_used(), "loss": loss})

    def _check_stop(self, optimizer=None) -> None:
        if self.should_stop():
            self._save(optimizer)
            raise Interrupted(f"stopped in stage {self.state['stage']} at step {self.state['step']}")

    # --- stage 1: labels ---------------------------------------------------------
    def _stage_labels(self) -> None:
        if self.state["labels"] is None:
            if self.config.method == "fo-ds":
                with torch.no_grad():
                    self.classifier.eval()
                    labels = self.classifier(self.x_train).argmax(-1)
            elif self.config.epochs == 0:
                labels = torch.zeros(0, dtype=torch.long)
            else:
                chunk = 1024
                labels = torch.cat([self._meter.labels(self.x_train[lo : lo + chunk])
                                    for lo in range(0, self.x_train.shape[0], chunk)])
            self.state["labels"] = labels.long()
        self._notify(1)

    # --- shared training loop -------------------------------------------------------
    def _batch(self, stage: str, step: int) -> torch.Tensor:
        n = self.x_train.shape[0]
        b = min(self.config.batch_size, n)
        spe = self.config.steps_per_epoch(n)
        epoch, index = divmod(step, spe)
        perm = epoch_permutation(n, _stage_seed(self.config.seed, stage), epoch)
        return perm[index * b : (index + 1) * b]

    def _noise(self, stage: str, step: int, shape) -> torch.Tensor:
        g = torch.Generator().manual_seed(_stage_seed(self.config.seed, stage, step, 1))
        return torch.randn(shape, generator=g) * self.config.sigma

    def _loop(self, epochs: int, params: list[torch.nn.Parameter], step_fn, *, affordable=None) -> None:
        stage = self.state["stage"]
        total = epochs * self.config.steps_per_epoch(self.x_train.shape[0])
        if total == 0 or not params:
            self._notify(0)
            return
        optimizer = torch.optim.Adam(params, lr=self.config.lr)
        if self.state["optimizer"] is not None:
            optimizer.load_state_dict(self.state["optimizer"])
        while self.state["step"] < total:
            self._check_stop(optimizer)
            step = self.state["step"]
            if affordable is not None and not affordable():
                self.state["truncated_at"] = step
                break
            optimizer.zero_grad(set_to_none=True)
            loss = step_fn(step)
            optimizer.step()
            self.state["step"] = step + 1
            self.state["history"].append((stage, step, float(loss)))
            self._notify(total, float(loss))
            if self.state["step"] % self.config.checkpoint_every == 0:
                self._save(optimizer)
        self._save(None)

    # --- stage 2: autoencoder -----------------------------------------------------------
    def _stage_autoencoder(self) -> None:
        ae = self.frontend.autoencoder
        if ae is None:
            self._notify(0)
            return
        ae.train()

        def step_fn(step: int) -> float:
            x = self.x_train[self._batch("autoencoder", step)]
            loss = F.mse_loss(ae(x), x)
            loss.backward()
            return float(loss.detach())

        self._loop(self.config.ae_epochs, list(ae.parameters()), step_fn)

    # --- stage 3: denoiser warm start -------------------------------------------------
    def _stage_warmup(self) -> None:
        denoiser = self.frontend.denoiser
        denoiser.train()

        def step_fn(step: int) -> float:
            x = self.x_train[self._batch("warmup", step)]
            loss = F.mse_loss(denoiser(x + self._noise("warmup", step, x.shape)), x)
            loss.backward()
            return float(loss.detach())

        self._loop(self.config.warmup_epochs, list(denoiser.parameters()), step_fn)

    # --- stage 4: stability (FO or ZO) ------------------------------------------------
    def _estimator(self, batch: int):
        cfg = self.config
        if cfg.estimator == "cge":
            return CGE(mu=cfg.mu, difference="forward")
        return RGE(q=cfg.q, mu=cfg.mu, difference="forward", direction="sphere",
                   groups=tuple(f"s{b}" for b in range(batch)))

    def _stage_stability(self) -> None:
        cfg = self.config
        fe = self.frontend
        modules = trainable_modules(fe, cfg.method)
        for m in modules:
            m.train()
        if fe.autoencoder is not None:
            fe.autoencoder.decoder.eval()
            fe.autoencoder.decoder.requires_grad_(False)
        params = [p for m in modules for p in m.parameters()]
        labels = self.state["labels"]
        numel = int(np.prod(self.image_shape))
        batch = min(cfg.batch_size, self.x_train.shape[0])
        per_step = cfg.queries_per_step(numel, batch)
        cert_cost = self.x_test.shape[0] * (cfg.n0 + cfg.n)

        if cfg.method == "fo-ds":
            clf = self.classifier.eval()
            clf.requires_grad_(False)

            def step_fn(step: int) -> float:
                idx = self._batch("stability", step)
                x = self.x_train[idx]
                x_noisy = x + self._noise("stability", step, x.shape)
                denoised = fe.denoise(x_noisy)
                loss = F.cross_entropy(clf(denoised), labels[idx])
                if cfg.mse_weight:
                    loss = loss + cfg.mse_weight * F.mse_loss(denoised, x)
                loss.backward()
                self.state["forward_passes"] += 1
                self.state["samples_forwarded"] += x.shape[0]
                return float(loss.detach())

            self._loop(cfg.epochs, params, step_fn)
            return

        decoder = fe.autoencoder.decoder if fe.autoencoder is not None else None
        oracle = LatentOracle(self._meter, decoder if decoder is not None else
                              (lambda z: z.view(-1, *self.image_shape)))
        estimator = self._estimator(batch)

        def affordable() -> bool:
            left = self._meter.left()
            return left is None or left >= per_step + cert_cost

        def step_fn(step: int) -> float:
            idx = self._batch("stability", step)
            x = self.x_train[idx]
            x_noisy = x + self._noise("stability", step, x.shape)
            codes = fe.code(x_noisy)
            oracle.set_point(codes.detach(), labels[idx])
            estimate = estimator.estimate(oracle, (labels[idx],), step=step, seed=cfg.seed)
            a = oracle.gradient_from(estimate)
            surrogate = (a * codes).sum()
            if cfg.mse_weight:
                surrogate = surrogate + cfg.mse_weight * F.mse_loss(fe.denoise(x_noisy), x)
            surrogate.backward()
            self.state["forward_passes"] += estimate.forward_passes
            self.state["samples_forwarded"] += estimate.forward_passes * x.shape[0]
            return estimate.loss

        self._loop(cfg.epochs, params, step_fn, affordable=affordable)

    # --- stage 5: certification ------------------------------------------------------
    def base_classifier(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x ↦ f(front end(x))`` labels through the (metered) black box."""
        fe = self.frontend.eval()

        def classify(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return self._meter.labels(fe(x))

        return classify

    def _stage_certify(self) -> None:
        cfg = self.config
        classify = self.base_classifier()
        certs = self.state["certificates"]
        total = self.x_test.shape[0]
        self.state["step"] = len(certs)
        while len(certs) < total:
            self._check_stop()
            i = len(certs)
            c = certify(classify, self.x_test[i], sigma=cfg.sigma, n0=cfg.n0, n=cfg.n, alpha=cfg.alpha,
                        num_classes=self.num_classes, batch_size=cfg.certify_batch,
                        generator=image_generator(cfg.seed, i))
            certs.append({"index": i, "label": int(self.y_test[i]), **c.as_dict(),
                          "correct": bool(c.prediction == int(self.y_test[i]))})
            self.state["step"] = len(certs)
            self._notify(total)
            if len(certs) % cfg.checkpoint_every == 0:
                self._save()
        self._save()

    # --- stage 6: artifacts ---------------------------------------------------------
    @property
    def report(self) -> dict:
        cfg = self.config
        certs = self.state["certificates"]
        acc = certified_accuracy([c["prediction"] for c in certs], [c["radius"] for c in certs],
                                 [c["label"] for c in certs], cfg.radii) if certs else {}
        queries = dict(self.state["queries"])
        queries["total"] = sum(queries.values())
        return {
            "method": cfg.method,
            "estimator": "fo" if cfg.method == "fo-ds" else cfg.estimator,
            "q": cfg.q if cfg.method != "fo-ds" and cfg.estimator == "rge" else None,
            "zo_dim": cfg.zo_dim(int(np.prod(self.image_shape))) if cfg.zeroth_order else None,
            "sigma": cfg.sigma, "n0": cfg.n0, "n": cfg.n, "alpha": cfg.alpha,
            "num_images": len(certs),
            "certified_accuracy": acc,
            "abstain_rate": float(np.mean([c["prediction"] == -1 for c in certs])) if certs else None,
            "mean_radius_correct": float(np.mean([c["radius"] for c in certs if c["correct"]] or [0.0])),
            "queries": queries,
            "planned_queries": self.plan,
            "training_truncated_at_step": self.state["truncated_at"],
            "sessions": self.state["sessions"],
            "session_starts": self.state["session_starts"],
            "config": cfg.as_dict(),
            "results": certs,
        }

    def _stage_export(self) -> None:
        cfg = self.config
        fe = self.frontend.eval()
        example = self.x_test[: min(4, self.x_test.shape[0])]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        graphs = [export_module(fe, example, self.out_dir / "frontend.onnx", input_name="x", output_name="x_hat")]
        if fe.autoencoder is not None:
            graphs.append(export_module(DenoiserEncoder(fe), example, self.out_dir / "denoiser_encoder.onnx",
                                        input_name="x", output_name="z"))
            with torch.no_grad():
                z = fe.code(example)
            graphs.append(export_module(fe.autoencoder.decoder, z, self.out_dir / "decoder.onnx",
                                        input_name="z", output_name="x_hat"))
        else:
            graphs.append(export_module(fe.denoiser, example, self.out_dir / "denoiser.onnx",
                                        input_name="x", output_name="x_hat"))
        report = self.report
        io.write_json(self.out_dir / "certification.json", report)
        io.write_json(self.out_dir / "manifest.json", {
            "edgezo": __version__, "method": cfg.method, "graphs": graphs,
            "usage": "send frontend(x) to the black box; smooth with Gaussian noise of sigma before frontend",
            "sigma": cfg.sigma, "image_shape": list(self.image_shape), "config": cfg.as_dict()})
        trainable = sum(p.numel() for m in trainable_modules(fe, cfg.method) for p in m.parameters())
        io.write_json(self.out_dir / "metrics.json", {
            "recipe": f"robustify-{cfg.method}", "estimator": report["estimator"], "backend": "blackbox",
            "seed": cfg.seed, "params": trainable, "forward_passes": self.state["forward_passes"],
            "samples_forwarded": self.state["samples_forwarded"], "queries_used": report["queries"]["total"],
            "wall_s": round(self._wall(), 2), "peak_rss_mb": peak_rss_mb(),
            "certified_accuracy": report["certified_accuracy"], "status": "completed"})
        self._save()
        self._notify(1)


def load_report(out_dir: str | Path) -> dict:
    """The certification report of a finished run."""
    path = Path(out_dir) / "certification.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; the run has not finished")
    import json

    return json.loads(path.read_text())
