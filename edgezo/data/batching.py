"""Mini-batch order as a pure function of a generator or of (seed, epoch), so a resumed run replays it exactly."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError


def batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    order: Tensor | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Iterate over ``(xb, yb)`` mini-batches of one epoch.

    With ``shuffle=True`` the order is ``torch.randperm(n, generator=generator)``,
    drawn when ``batches`` is called (not lazily), so the generator state after
    the call is the same whether or not the epoch is consumed. ``order`` (e.g.
    from :func:`epoch_permutation`) fixes the order explicitly and excludes
    ``generator``. ``shuffle=False`` keeps index order. The last short batch is
    yielded unless ``drop_last``.
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ConfigError(f"x has {n} samples but y has {y.shape[0]}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    if order is not None:
        if generator is not None:
            raise ValueError("pass either order or generator, not both")
        idx = torch.as_tensor(order, dtype=torch.int64)
        if idx.ndim != 1:
            raise ValueError(f"order must be 1-D, got shape {tuple(idx.shape)}")
    elif shuffle:
        if generator is None:
            raise ValueError("shuffle=True needs generator=torch.Generator() (or pass order=)")
        idx = torch.randperm(n, generator=generator, device=generator.device)
    else:
        idx = torch.arange(n)
    idx = idx.to(x.device)
    stop = idx.shape[0] - (idx.shape[0] % batch_size if drop_last else 0)

    def _iter() -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, stop, batch_size):
            b = idx[start : start + batch_size]
            yield x[b], y[b.to(y.device)]

    return _iter()



_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15



def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z



def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """A permutation of ``range(n)`` that depends only on ``(n, seed, epoch)``.

    With ``G = 0x9E3779B97F4A7C15``, ``mix`` the splitmix64 finalizer and 64-bit
    wrap-around: ``s = mix((mix(seed + G) ^ epoch) + G)``; sample ``i`` gets the
    key ``mix(s + (i + 1) * G)`` and the permutation sorts the keys (stable).
    Pure integer arithmetic, so it is the same on every platform and library
    version; a resumed run recomputes it.
    Returns an int64 tensor.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    with np.errstate(over="ignore"):
        s = np.array([(int(seed) + _GOLDEN) & _MASK64], dtype=np.uint64)
        s = _splitmix64(s)
        s = _splitmix64((s ^ np.uint64(int(epoch) & _MASK64)) + np.uint64(_GOLDEN))
        i = np.arange(1, n + 1, dtype=np.uint64)
        keys = _splitmix64(s + i * np.uint64(_GOLDEN))
    return torch.from_numpy(np.argsort(keys, kind="stable").astype(np.int64))
