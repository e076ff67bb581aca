"""Fuzz ``edgezo train --set`` with fresh random overrides (a measurement tool, not a test).

    python tests/edgezo/fuzz_cli.py --seed 3 --runs 200

Each run picks a shipped recipe and one to three overrides: a declared key
(``train.epochs``), a misspelt one, a key without its section, or an unknown
one, set to an extreme TOML literal (0, -1, 2^63, 1e999, nan, a string, a list,
a table). ``edgezo train`` runs in process for at most one step. A run must end
with exit status 0, or 2 with one ``edgezo: error:`` line; anything that
escapes ``main()`` is a traceback and a failure (exit 1).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import random
import sys
import tempfile
import traceback

from edgezo.cli import main
from edgezo.recipe_schema import known_keys

VALUES = ["0", "-1", "1", "2", "9223372036854775808", "1e999", "nan", "-inf", "0.5", "-0.0", "'x'", '""', "abc",
          "[]", "[0]", "[64, 0, 10]", "[[1]]", "{}", "{kind = 'x'}", "true", "'rge'", "'adam'", "'cge'", "'mlp'",
          "1e-300", "65536", "[1.5, 2]"]
RECIPES = ["digits-mlp", "digits-mlp-rge", "digits-tt", "digits-cnn", "digits-tt-device"]


def _key(rng: random.Random, keys: list[str]) -> str:
    key = rng.choice(keys)
    r = rng.random()
    if r < 0.15:
        return key.split(".")[-1]  # without its section
    if r < 0.3 and len(key) > 3:
        i = rng.randrange(len(key) - 1)
        return key[:i] + key[i + 1] + key[i] + key[i + 2:]  # two letters swapped
    if r < 0.35:
        return rng.choice(["model.widthh", "estimator.qq", "zzz", "train.epochs.x", "phases.0.estimator"])
    return key


def main_fuzz(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    keys = [k for k in known_keys() if "." in k] + ["loss", "task", "groups"]
    counts: collections.Counter = collections.Counter()
    for _ in range(args.runs):
        sets = [f"{_key(rng, keys)}={rng.choice(VALUES)}" for _ in range(rng.randint(1, 3))]
        recipe = rng.choice(RECIPES)
        with tempfile.TemporaryDirectory() as tmp:
            argv_ = ["train", "--recipe", recipe, "--out", tmp + "/run", "--no-progress", "--max-steps", "1"]
            for s in sets:
                argv_ += ["--set", s]
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = main(argv_)
            except SystemExit as exc:  # argparse refusing an option: its own one-line usage error
                code = exc.code
            except Exception:
                counts["tracebacks"] += 1
                print(f"TRACEBACK: {' '.join(argv_)}\n{traceback.format_exc()[-800:]}", file=sys.stderr)
                continue
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("edgezo: error:")]
        if code == 2 and len(lines) != 1:
            counts["bad_error_output"] += 1
        counts[f"exit_{code}"] += 1
    print(json.dumps({"seed": args.seed, "runs": args.runs, **counts}))
    return 1 if counts["tracebacks"] or counts["bad_error_output"] else 0


if __name__ == "__main__":
    raise SystemExit(main_fuzz())
