"""``edgezo robustify``: one local ZO-AE-DS run against a black box, certified.

    edgezo robustify --onnx classifier.onnx --out DIR [--method zo-ae-ds|zo-ds] [--estimator rge|cge] [--q 16]
    edgezo robustify --url http://127.0.0.1:8080 --api-key KEY --out DIR ...

Writes DIR/certification.json (per-image certificates, certified accuracy per
radius), DIR/metrics.json (``certified_accuracy``, ``queries_used``, ...),
the front end as ONNX (frontend.onnx; denoiser_encoder.onnx + decoder.onnx
for ZO-AE-DS, denoiser.onnx for ZO-DS) with manifest.json, and checkpoint.pt;
``--resume`` continues an interrupted run in DIR.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from ..errors import ConfigError
from ..io import out_dir
from ..overrides import parse_set


class RobustifyCLIError(ConfigError):
    """Bad options for ``edgezo robustify``."""


def _blackbox(args):
    if bool(args.onnx) == bool(args.url):
        raise RobustifyCLIError("name the black box with either --onnx MODEL or --url URL (with --api-key)")
    if args.onnx:
        from ..adapters.robustify import OnnxBlackBox

        return OnnxBlackBox(args.onnx, scores=args.scores)
    if not args.api_key:
        raise RobustifyCLIError("--url needs --api-key (the model endpoint's key)")
    from ..host.service.client import HttpBlackBox

    return HttpBlackBox(args.url, args.api_key)


def cmd_robustify(args) -> int:
    from ..adapters.robustify import BlackBoxError, Interrupted, QueryBudgetExceeded, Robustifier, RobustifyConfig
    from ..data import load_dataset

    settings = {"method": args.method, "estimator": args.estimator, "q": args.q, "sigma": args.sigma,
                "n0": args.n0, "n": args.n, "alpha": args.alpha, "radii": args.radii, "seed": args.seed,
                "query_budget": args.query_budget}
    for flag in ("latent_dim", "epochs", "ae_epochs", "warmup_epochs", "batch_size"):
        if getattr(args, flag) is not None:
            settings[flag] = getattr(args, flag)
    settings.update(parse_set(args.set))
    config = RobustifyConfig.from_dict(settings)
    out = out_dir(args.out)
    if (out / "checkpoint.pt").exists() and not (args.resume or args.force):
        raise RobustifyCLIError(f"{out} already holds a run; --resume continues it, --force starts over")
    data = load_dataset(args.dataset, args.data, flatten=False)
    x_train = data.x_train[: args.train_size] if args.train_size else data.x_train
    x_test, y_test = data.x_test[: args.test_size], data.y_test[: args.test_size]
    blackbox = _blackbox(args)
    state = {"stage": None, "t": 0.0}

    def progress(info: dict) -> None:
        now = time.monotonic()
        if info["stage"] != state["stage"] or now - state["t"] > 5:
            state.update(stage=info["stage"], t=now)
            loss = f" loss {info['loss']:.4f}" if info.get("loss") is not None else ""
            print(f"  {info['stage']:11s} {info['step']}/{info['total']}{loss} · {info['queries_used']} queries",
                  file=sys.stderr, flush=True)

    interrupted = threading.Event()
    runner = Robustifier(config, blackbox, x_train, x_test, y_test, out_dir=out, num_classes=data.num_classes,
                         progress=progress, should_stop=interrupted.is_set)
    print(f"edgezo: robustifying {args.onnx or args.url} with {config.method} ({config.estimator}) -> {out}; "
          f"planned queries {runner.plan['total']}", file=sys.stderr)
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # Ctrl-C stops after the current step with a checkpoint
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        report = runner.run(resume=args.resume)
    except Interrupted as err:
        print(f"edgezo: interrupted ({err}); continue with --resume --out {out}", file=sys.stderr)
        return 130
    except (QueryBudgetExceeded, BlackBoxError) as err:
        raise RobustifyCLIError(f"{err} (the checkpoint in {out} keeps the work done so far)") from None
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    acc = ", ".join(f"r={r}: {v:.3f}" for r, v in report["certified_accuracy"].items())
    print(f"certified accuracy ({report['num_images']} images, N={config.n}) {acc} · "
          f"{report['queries']['total']} queries · {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("robustify", help="train a denoiser (+ encoder) in front of a black box with ZO "
                                                "(ZO-AE-DS) and certify it with randomized smoothing")
    p.add_argument("--onnx", help="the black box as an ONNX classifier")
    p.add_argument("--scores", choices=("logits", "probabilities"), default="logits",
                   help="what the ONNX model outputs (softmax is applied to logits)")
    p.add_argument("--url", help="the black box as an `edgezo serve model` endpoint")
    p.add_argument("--api-key", help="API key for --url")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="start over even if --out holds a run")
    p.add_argument("--dataset", default="digits", help="digits (default), mnist, fashion-mnist, cifar10")
    p.add_argument("--data", help="data directory for datasets that need one")
    p.add_argument("--train-size", type=int, help="use the first k training images")
    p.add_argument("--test-size", type=int, default=100, help="certify the first m test images (default 100)")
    p.add_argument("--method", choices=("zo-ae-ds", "zo-ds"), default="zo-ae-ds")
    p.add_argument("--estimator", choices=("rge", "cge"), default="rge")
    p.add_argument("--q", type=int, default=16, help="RGE directions per sample")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--epochs", type=int, help="stability-stage epochs")
    p.add_argument("--ae-epochs", type=int)
    p.add_argument("--warmup-epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--radii", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    p.add_argument("--query-budget", type=int, help="the most queries the run may send")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other RobustifyConfig field")
    p.set_defaults(func=cmd_robustify)
