"""Fuzz the two HTTP services with fresh random bodies (a measurement tool, not a test).

    python tests/host/fuzz_services.py --seed 7 --bodies 3000

Sends ``--bodies`` random request bodies — valid ones mutated field by field with
extreme values (NaN, ±Infinity, huge and negative integers, wrong types, long
strings, deep nesting, odd shapes), plus raw byte damage — to ``POST /v1/predict``
of ``edgezo serve model`` and ``POST /v1/jobs`` of ``edgezo serve robustify``
(in process, FastAPI's TestClient, no target contact), and counts answers by
status; any 5xx or any answer that is not strict JSON is a failure (exit 1).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import random
import sys
import tempfile
from pathlib import Path

import torch
from edgezo.host.service.auth import Credential
from edgezo.host.service.model_server import create_model_app
from edgezo.host.service.robustify_server import create_robustify_app
from fastapi.testclient import TestClient

from edgezo.adapters.robustify.onnx_export import export_module

EXTREMES = [float("nan"), float("inf"), -float("inf"), 2**63, 2**64, -2**63 - 1, 10**400, -1, 0, 1.5, "", "x" * 5000,
            None, True, [], {}, [[]], [1] * 50, {"a": 1}, "NaN", 1e308, -1e-320]


def _mutate(rng: random.Random, body):
    """A copy of ``body`` with one leaf (or container) replaced by an extreme value, or a key added/removed."""
    body = copy.deepcopy(body)
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list) and node:
            i = rng.randrange(len(node))
            walk(node[i], path + [i])

    walk(body, [])
    path = rng.choice(paths[1:] or paths)
    if not path:
        return rng.choice(EXTREMES)
    parent = body
    for p in path[:-1]:
        parent = parent[p]
    op = rng.random()
    if op < 0.1 and isinstance(parent, dict):
        parent.pop(path[-1], None)
    elif op < 0.2 and isinstance(parent, dict):
        parent[rng.choice(["colour", "__proto__", "settings", "x" * 300])] = rng.choice(EXTREMES)
    else:
        parent[path[-1]] = rng.choice(EXTREMES)
    return body


def _raw(rng: random.Random, body) -> str:
    text = json.dumps(body, allow_nan=True)
    choice = rng.randrange(4)
    if choice == 0:
        return text[: rng.randrange(len(text) + 1)]
    if choice == 1:
        return "[" * rng.randint(100, 20000) + "]" * rng.randint(0, 100)
    if choice == 2:
        i = rng.randrange(len(text) + 1)
        return text[:i] + chr(rng.randrange(1, 0x2FFF)) + text[i:]
    return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randint(0, 200)))


def _strict_json(text: str) -> bool:
    def refuse(name):
        raise ValueError(name)
    try:
        json.loads(text, parse_constant=refuse)
        return True
    except ValueError:
        return False


def fuzz(client: TestClient, path: str, base: dict, rng: random.Random, n: int) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for k in range(n):
        body = _mutate(rng, base)
        if rng.random() < 0.3:
            body = _mutate(rng, body)
        text = _raw(rng, base) if k % 5 == 4 else json.dumps(body, allow_nan=True)
        r = client.post(path, content=text.encode("utf-8", "surrogatepass"),
                        headers={"Content-Type": "application/json"})
        counts[r.status_code] += 1
        if r.status_code >= 500 or not _strict_json(r.text):
            counts["failures"] += 1
            print(f"FAIL {r.status_code} {path}: {text[:200]!r} -> {r.text[:200]!r}", file=sys.stderr)
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bodies", type=int, default=1000, help="bodies per endpoint")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    key, token = "fuzz-model-key-01", "fuzz-token-00001"
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "clf.onnx"
        torch.manual_seed(0)
        export_module(torch.nn.Linear(64, 10), torch.zeros(2, 64), onnx, output_name="logits")
        model_app = create_model_app(onnx, [Credential("k", key, 10**9)])
        with TestClient(model_app, headers={"X-API-Key": key}) as c:
            predict = fuzz(c, "/v1/predict", {"inputs": [[0.5] * 64] * 2, "output": "labels"}, rng, args.bodies)
            b64 = fuzz(c, "/v1/predict", {"inputs_b64": "AAAAAA==", "shape": [1, 64]}, rng, args.bodies // 2)
        jobs_app = create_robustify_app(Path(tmp) / "jobs.sqlite", Path(tmp) / "work", [Credential("t", token, 10**6)],
                                        start_worker=False, check_target=False)
        job = {"target": {"url": "http://127.0.0.1:9/", "api_key": "k" * 16},
               "data": {"dataset": "digits", "train_size": 8, "test_size": 1}, "query_budget": 5000,
               "estimator": "cge", "sigma": 0.25, "q": 4,
               "settings": {"latent_dim": 2, "epochs": 1, "ae_epochs": 1, "warmup_epochs": 1, "n0": 2, "n": 4,
                            "batch_size": 8, "radii": [0.0, 0.25]}}
        with TestClient(jobs_app, headers={"Authorization": f"Bearer {token}"}) as c:
            jobs = fuzz(c, "/v1/jobs", job, rng, args.bodies)
    total = predict + b64 + jobs
    print(json.dumps({"seed": args.seed, "predict": dict(predict), "predict_b64": dict(b64), "jobs": dict(jobs),
                      "responses_5xx": sum(v for k, v in total.items() if isinstance(k, int) and k >= 500),
                      "failures": total["failures"]}, default=str))
    return 1 if total["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
