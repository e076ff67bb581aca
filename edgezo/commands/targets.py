"""``edgezo targets``: the shipped target profiles, and whether a recipe fits each.

    edgezo targets [--recipe NAME|FILE] [--batch-size N] [--json]

Without ``--recipe`` it lists every profile (memory, number formats, noise,
cross-compilation triple). With ``--recipe`` it adds the estimated SRAM of one
zeroth-order training step of that recipe on each profile and whether it fits.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("targets", help="list the target profiles (memory, formats, noise, cross triple)")
    p.add_argument("--recipe", help="also estimate whether this recipe's training step fits each target")
    p.add_argument("--batch-size", type=int, help="batch for the memory estimate (default: the recipe's)")
    p.add_argument("--data", help="data path for recipes that need one")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_targets)


def _kib(n: int) -> str:
    return f"{n // 1024:,} KiB" if n < 2**20 else f"{n / 2**20:g} MiB"


def _row(profile) -> dict:
    fmt = f"{profile.weight_format}/{profile.activation_format}/{profile.accumulator_format}"
    if profile.activation_frac_bits is not None:
        fmt += f" (Q{profile.activation_fmt.bits - 1 - profile.activation_frac_bits}.{profile.activation_frac_bits})"
    noise = "none" if not profile.has_noise else \
        f"{profile.noise} {100 * profile.noise_relative_std:g}% per {profile.noise_granularity}"
    return {"name": profile.name, "sram": _kib(profile.sram_bytes), "flash": _kib(profile.flash_bytes),
            "formats": fmt, "noise": noise, "cross": profile.triple or "-", "description": profile.description}


def cmd_targets(args) -> int:
    from ..targets.profile import list_profiles

    profiles = list_profiles()
    rows = [_row(p) for p in profiles]
    if args.recipe:
        import torch

        from ..data import load_dataset
        from ..models import build_model
        from ..recipes import get_recipe, train_config
        from ..targets.memory import BudgetError
        from .export import memory_check

        recipe = get_recipe(args.recipe)
        config = train_config(recipe)
        batch = int(args.batch_size or config.batch_size)
        spec = recipe.section("data")
        data = load_dataset(spec.pop("name", "digits"), args.data or spec.pop("path", None), **spec)
        torch.manual_seed(config.seed)
        model = build_model(recipe.section("model"))
        for p, row in zip(profiles, rows):
            try:
                bd = memory_check(model, p, input_shape=data.input_shape, batch_size=batch, recipe=recipe)
            except BudgetError as err:
                bd = err.breakdown
            row.update(step_bytes=bd.total, fits="yes" if bd.fits else "NO")
    if args.json:
        print(json.dumps([dict(r, **{"sram_bytes": p.sram_bytes, "flash_bytes": p.flash_bytes})
                          for r, p in zip(rows, profiles)], indent=2))
        return 0
    cols = ["name", "sram", "flash", "formats", "noise", "cross"]
    if args.recipe:
        cols += ["step_bytes", "fits"]
    table = [[c.replace("_", " ") for c in cols]] + [[f"{r[c]:,}" if isinstance(r[c], int) else str(r[c])
                                                      for c in cols] for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    for k, t in enumerate(table):
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    if args.recipe:
        print(f"\nstep bytes: estimated SRAM of one ZO training step of {args.recipe} (batch {batch}); "
              "details: edgezo export --recipe ... --target NAME")
    else:
        for r in rows:
            print(f"\n{r['name']}: {r['description']}", end="")
        print()
    return 0
