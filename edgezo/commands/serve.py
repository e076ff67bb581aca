"""``edgezo serve model|robustify``: the HTTP services of black-box robustification.

    edgezo serve model --onnx classifier.onnx [--keys keys.toml] [--port 8080]
                       [--output probabilities|labels] [--scores logits|probabilities] [--usage-db usage.sqlite]
    edgezo serve robustify [--tokens tokens.toml] [--db jobs.sqlite] [--workdir robustify-jobs]
                           [--data-root DIR] [--port 8090]

Credentials: ``--keys`` / ``--tokens`` TOML files (see ``edgezo.host.service.auth``),
or the environment variables ``EDGEZO_MODEL_KEYS`` / ``EDGEZO_SERVICE_TOKENS``
(``"secret[:N],..."``; N = the key's query budget / the token's query quota).
Both services bind 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import importlib.util

from edgezo.errors import ConfigError, MissingDependency


class ServeError(ConfigError):
    """Bad options for a service (printed as ``edgezo: error: ...``)."""


def _need_serve_extra() -> None:
    missing = [m for m in ("fastapi", "uvicorn", "httpx") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(f"edgezo serve needs {', '.join(missing)}: pip install 'edgezo[serve]'")


def cmd_serve_model(args) -> int:
    _need_serve_extra()
    from ..host.service.auth import MODEL_KEYS_ENV, load_credentials
    from ..host.service.model_server import create_model_app
    from ..host.service.runner import serve

    keys = load_credentials(args.keys, "keys", MODEL_KEYS_ENV)
    app = create_model_app(args.onnx, keys, output=args.output, scores=args.scores, usage_db=args.usage_db)
    print(f"edgezo: serving {args.onnx} ({args.output}) to {len(keys)} API key(s) on http://{args.host}:{args.port}")
    serve(app, args.host, args.port, log_level=args.log_level)
    return 0


def cmd_serve_robustify(args) -> int:
    _need_serve_extra()
    from ..host.service.auth import SERVICE_TOKENS_ENV, load_credentials
    from ..host.service.robustify_server import create_robustify_app
    from ..host.service.runner import serve

    tokens = load_credentials(args.tokens, "tokens", SERVICE_TOKENS_ENV)
    db = args.db or f"{args.workdir}/jobs.sqlite"
    app = create_robustify_app(db, args.workdir, tokens, data_root=args.data_root, allow_targets=args.allow_target)
    print(f"edgezo: robustify service (jobs in {db}, artifacts in {args.workdir}) on http://{args.host}:{args.port}")
    serve(app, args.host, args.port, log_level=args.log_level)
    return 0


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="HTTP services: a black-box model endpoint, the robustify job API")
    sub = serve.add_subparsers(dest="service", metavar="SERVICE")

    model = sub.add_parser("model", help="serve an ONNX classifier as a query-only black box")
    model.add_argument("--onnx", required=True, help="the classifier (first input: a batch of samples)")
    model.add_argument("--keys", help="TOML file with a [keys] table (default: $EDGEZO_MODEL_KEYS)")
    model.add_argument("--output", choices=("probabilities", "labels"), default="probabilities",
                       help="what callers get back (default: probabilities)")
    model.add_argument("--scores", choices=("logits", "probabilities"), default="logits",
                       help="what the ONNX model outputs (softmax is applied to logits)")
    model.add_argument("--usage-db", default=":memory:", help="SQLite file keeping per-key usage across restarts")
    model.add_argument("--host", default="127.0.0.1")
    model.add_argument("--port", type=int, default=8080)
    model.add_argument("--log-level", default="info")
    model.set_defaults(func=cmd_serve_model)

    rob = sub.add_parser("robustify", help="the ZO-AE-DS job service (submit, status, artifacts, cancel)")
    rob.add_argument("--tokens", help="TOML file with a [tokens] table (default: $EDGEZO_SERVICE_TOKENS)")
    rob.add_argument("--workdir", default="robustify-jobs", help="job checkpoints and artifacts")
    rob.add_argument("--db", help="SQLite job store (default: WORKDIR/jobs.sqlite)")
    rob.add_argument("--data-root", help="directory that job data paths are resolved in")
    rob.add_argument("--allow-target", action="append", default=[], metavar="HOST",
                     help="a host that jobs' target URLs may name (repeatable; loopback is always allowed)")
    rob.add_argument("--host", default="127.0.0.1")
    rob.add_argument("--port", type=int, default=8090)
    rob.add_argument("--log-level", default="info")
    rob.set_defaults(func=cmd_serve_robustify)

    def no_service(args) -> int:
        serve.print_help()
        return 2

    serve.set_defaults(func=no_service)
