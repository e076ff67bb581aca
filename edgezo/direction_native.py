"""The host CPU's fast path of the Gaussian direction generator (docs/directions.md §8).

``edgezo._ezdir_host`` is a shared library built at install time from
``edgezo/native/ezdir_host.c``, which compiles the firmware's reference C
(``targets/firmware/ezdir.c``) with the hardware float32 square root and lets
the compiler vectorise the Box–Muller transform across pairs. Its values are
the firmware's by construction and are tested bit for bit against the numpy
path and the committed vectors. It is loaded with :mod:`ctypes` (the library
exports plain C functions, no Python API), and it is optional: without a C
compiler at install time, or with ``EDGEZO_NATIVE=0``, :func:`available` is
false and the numpy path runs.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path

import numpy as np

ABI = 1
_LIB: ctypes.CDLL | None = None
_TRIED = False


def _find() -> Path | None:
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_ezdir_host{suffix}"
        if path.is_file():
            return path
    return None


def _load() -> ctypes.CDLL | None:
    global _LIB, _TRIED
    if _TRIED:
        return _LIB
    _TRIED = True
    if os.environ.get("EDGEZO_NATIVE", "1") == "0":
        return None
    path = _find()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:
        return None
    lib.ezdir_host_abi.restype = ctypes.c_int
    if lib.ezdir_host_abi() != ABI:
        return None
    lib.ezdir_host_gaussian.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_size_t,
                                        ctypes.c_void_p]
    lib.ezdir_host_gaussian.restype = None
    _LIB = lib
    return lib


def available() -> bool:
    """Whether the native generator was built and loads (and ``EDGEZO_NATIVE`` is not ``0``)."""
    return _load() is not None


def gaussian_pairs(keys: np.ndarray, p0: int, npairs: int) -> np.ndarray:
    """Gaussian values of pairs ``p0 .. p0 + npairs - 1`` for every key: float32 array (S, 2 npairs).

    ``keys``: uint32 Gaussian keys (``seed_keys(seeds, "gaussian")``). Row ``k``
    holds ``z(seed_k)[2 p0 : 2 (p0 + npairs)]``.
    """
    lib = _load()
    if lib is None:
        raise RuntimeError("the native direction generator is not available (see edgezo.direction_native)")
    if p0 < 0 or npairs < 0 or p0 + npairs > 1 << 31:
        raise ValueError(f"pairs [{p0}, {p0 + npairs}) are outside [0, 2^31)")
    keys = np.ascontiguousarray(keys, dtype=np.uint32)
    out = np.empty((keys.size, 2 * npairs), dtype=np.float32)
    if keys.size and npairs:
        lib.ezdir_host_gaussian(keys.ctypes.data, keys.size, p0, npairs, out.ctypes.data)
    return out
