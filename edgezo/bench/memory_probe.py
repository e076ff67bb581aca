"""One measurement of ``edgezo bench memory``, run in a fresh process: ``python -m edgezo.bench.memory_probe JSON``.

The argument is a JSON object: ``size`` (GPT-2 ``n_layer``, ``n_embd``,
``n_head``, ``vocab``), ``batch``, ``context``, ``device``, ``mode``
(``inference``, ``zo``, ``fo``, ``mezo`` or ``time``) and for ``zo``
``q``/``difference``. It prints one JSON line.

Peak memory of the measured step: on CUDA ``torch.cuda.max_memory_allocated``
after a reset (model included); on the CPU the process's peak resident set
(``VmHWM``, reset through ``/proc/self/clear_refs`` just before the step)
minus the resident set after the imports and before the model was built, so
that the interpreter and library code every process carries is not counted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ..estimators import RGE
from ..losses import next_token
from ..models import causal_lm  # imported (with transformers) before the baseline resident set is read
from ..optim import seed_sgd_step
from ..oracles.torch_oracle import TorchOracle
from .mezo import mezo_step

MU, LR = 1e-3, 1e-6


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak(device: torch.device) -> bool:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb(device: torch.device, base_kb: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (_status_kb("VmHWM") - base_kb) / 1024


def _oracle(model) -> TorchOracle:
    """A TorchOracle whose budget (twice the largest tensor) makes the stacked path too big: the lean path."""
    largest = max(p.numel() * p.element_size() for p in model.parameters())
    return TorchOracle(model, next_token, max_memory=2 * largest)


def _step(mode: str, spec: dict, model, batch, seed: int) -> dict:
    if mode == "inference":
        with torch.no_grad():
            next_token(model(batch[0]), batch[1])
        return {}
    if mode == "fo":
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        next_token(model(batch[0]), batch[1]).backward()
        opt.step()
        return {}
    if mode == "mezo":
        mezo_step(model, next_token, batch, mu=MU, lr=LR, seeds=range(seed, seed + spec.get("q", 1)))
        return {}
    oracle = _oracle(model)
    rge = RGE(q=spec["q"], mu=MU, difference=spec["difference"], direction="gaussian")
    seed_sgd_step(oracle, rge.estimate(oracle, batch, step=seed, seed=0), LR)
    return {"paths": sorted(set(oracle.choices.values()))}


def _time(spec: dict, model, batch, reps: int) -> dict:
    """Best-of-``reps`` step times of edgezo (lean, central, q seeds) and the MeZO loop, interleaved."""
    oracle = _oracle(model)
    rge = RGE(q=spec.get("q", 1), mu=MU, difference="central", direction="gaussian")
    ours, mezo = [], []
    for rep in range(reps):
        t0 = time.perf_counter()
        seed_sgd_step(oracle, rge.estimate(oracle, batch, step=rep, seed=0), LR)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mezo_step(model, next_token, batch, mu=MU, lr=LR, seeds=range(rep, rep + spec.get("q", 1)))
        mezo.append(time.perf_counter() - t0)
    return {"edgezo_step_s": ours, "mezo_step_s": mezo}


def measure(spec: dict) -> dict:
    device = torch.device(spec.get("device", "cpu"))
    causal_lm._transformers().GPT2LMHeadModel  # noqa: B018  (the lazy transformers module loads it now)
    base_kb = _status_kb("VmRSS")
    n_layer, n_embd, n_head, vocab = spec["size"]
    torch.manual_seed(0)
    model = causal_lm.gpt2(vocab_size=vocab, context=spec["context"], n_layer=n_layer, n_embd=n_embd, n_head=n_head)
    model = model.to(device)
    ids = torch.randint(0, vocab, (spec["batch"], spec["context"]), generator=torch.Generator().manual_seed(1))
    batch = (ids.to(device), ids.to(device))
    out = {"parameters": sum(p.numel() for p in model.parameters()), "mode": spec["mode"]}
    if spec["mode"] == "time":
        return {**out, **_time(spec, model, batch, spec.get("reps", 2))}
    out["peak_reset"] = _reset_peak(device)
    t0 = time.perf_counter()
    out.update(_step(spec["mode"], spec, model, batch, seed=0))
    out["step_s"] = time.perf_counter() - t0
    out["peak_mb"] = _peak_mb(device, base_kb)
    return out


if __name__ == "__main__":
    torch.set_num_threads(int(json.loads(sys.argv[1]).get("threads", 1)))
    print(json.dumps(measure(json.loads(sys.argv[1]))))
