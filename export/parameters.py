"""The parameter values θ next to an exported graph (the graph takes them as inputs).

``params.bin`` holds θ as raw little-endian float32 in the flat layout order
of ``manifest.json``; ``model_params.h`` holds the same values as a C99
array with the offset of every parameter, for firmware that links θ in.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_parameters"]


def write_parameters(out: Path, exported, model) -> list[dict]:
    """θ (the graph has none: parameters are inputs) as raw float32 and as a C array."""
    import numpy as np

    from edgezo import io

    named = dict(model.named_parameters())
    theta = np.concatenate([named[e.name].detach().cpu().reshape(-1).numpy() for e in exported.layout.entries])
    theta = theta.astype("<f4")
    io.write_bytes(out / "params.bin", theta.tobytes())
    rows = [", ".join(f"{v!r}f" if np.isfinite(v) else "0.0f" for v in theta[i : i + 8].tolist())
            for i in range(0, theta.size, 8)]
    offsets = "\n".join(f"#define EDGEZO_OFFSET_{exported.param_inputs[e.name].upper()} {e.offset}  "
                         f"/* {e.name} {tuple(e.shape)} */" for e in exported.layout.entries)
    header = (f"/* edgezo: parameter values theta ({theta.size} float32, flat layout order). Generated. */\n"
              "#ifndef EDGEZO_MODEL_PARAMS_H\n#define EDGEZO_MODEL_PARAMS_H\n"
              f"#define EDGEZO_DIM {theta.size}\n{offsets}\n"
              f"static const float edgezo_theta[EDGEZO_DIM] = {{\n  " + ",\n  ".join(rows) + "\n};\n#endif\n")
    io.write_text(out / "model_params.h", header)
    return [{"file": "params.bin", "kind": "parameters", "dtype": "float32", "byte_order": "little",
             "runtime": "raw float32 θ in the flat order of manifest.json parameters (offset, numel)"},
            {"file": "model_params.h", "kind": "c-header",
             "runtime": "C99: static const float edgezo_theta[] and the offset of every parameter"}]
