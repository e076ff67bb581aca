"""TT-SVD and the TT contraction helpers behind :class:`~edgezo.models.ttm.TTLinear`.

Rank vectors (``tt_ranks``, ``max_tt_ranks``), balanced mode factorisation
(``factorize``), TT-SVD of a dense matrix into TTM cores (``tt_svd``;
Oseledets 2011, Alg. 1) and the two ways to apply cores to an input with an
optional leading perturbation axis: rebuild W (``_reconstruct``) or contract
core by core (``_contract``). See docs/methods/tensor-train-zo.md.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor


def _as_modes(modes: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(m) for m in modes)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of positive ints, got {modes!r}") from None
    if len(out) == 0:
        raise ValueError(f"{what} must not be empty")
    for m, orig in zip(out, modes):
        if m != orig or m < 1:
            raise ValueError(f"{what} must be positive ints, got {tuple(modes)!r}")
    return out



def max_tt_ranks(out_modes: Sequence[int], in_modes: Sequence[int]) -> tuple[int, ...]:
    """Maximal TT ranks (1, R_1, ..., R_{K-1}, 1) of an M×N matrix with these modes.

    R_k = min(Π_{l≤k} m_l n_l, Π_{l>k} m_l n_l): the rank of the k-th unfolding of the
    tensorized matrix can never exceed either side. At these ranks TT-SVD is exact.
    """
    d = [m * n for m, n in zip(out_modes, in_modes)]
    k = len(d)
    ranks = [1]
    for i in range(1, k):
        ranks.append(min(math.prod(d[:i]), math.prod(d[i:])))
    ranks.append(1)
    return tuple(ranks)



def tt_ranks(
    ranks: int | Sequence[int], out_modes: Sequence[int], in_modes: Sequence[int]
) -> tuple[int, ...]:
    """Full rank vector (1, r_1, ..., r_{K-1}, 1).

    ``ranks`` is an int (every inner rank equals it, capped at the maximal TT ranks
    of :func:`max_tt_ranks`), or a sequence of the K-1 inner ranks, or of all K+1
    ranks with r_0 = r_K = 1. An explicit sequence is not capped: a rank above the
    maximal TT rank raises ``ValueError``.
    """
    k = len(out_modes)
    rmax = max_tt_ranks(out_modes, in_modes)
    if isinstance(ranks, bool):
        raise ValueError(f"ranks must be a positive int or a sequence of them, got {ranks!r}")
    if isinstance(ranks, numbers.Integral) or (isinstance(ranks, Tensor) and ranks.ndim == 0):
        r = int(ranks)
        if r < 1:
            raise ValueError(f"rank must be a positive int, got {r}")
        return tuple(min(r, rm) for rm in rmax)
    try:
        rs = [int(r) for r in ranks]
    except TypeError:
        raise ValueError(f"ranks must be a positive int or a sequence of them, got {ranks!r}") from None
    if len(rs) == k - 1:
        rs = [1] + rs + [1]
    elif len(rs) == k + 1:
        if rs[0] != 1 or rs[-1] != 1:
            raise ValueError(f"boundary ranks must be 1 (r_0 = r_K = 1), got {tuple(rs)}")
    else:
        raise ValueError(
            f"ranks sequence must have K-1={k - 1} inner ranks or K+1={k + 1} ranks "
            f"for K={k} cores, got {len(rs)}"
        )
    if any(r < 1 for r in rs):
        raise ValueError(f"ranks must be positive ints, got {tuple(rs)}")
    for i, (r, rm) in enumerate(zip(rs, rmax)):
        if r > rm:
            raise ValueError(
                f"rank r_{i}={r} exceeds the maximal TT rank {rm} for out_modes={tuple(out_modes)}, "
                f"in_modes={tuple(in_modes)} (maximal ranks {rmax})"
            )
    return tuple(rs)



def factorize(n: int, k: int) -> list[int]:
    """``k`` balanced integer factors of ``n`` (their product is exactly ``n``).

    Prime factors are placed largest first into the currently smallest factor
    (greedy longest-processing-time), so the factors are as even as the prime
    factorization allows; 1s pad when n has fewer than k prime factors. The result
    is sorted in non-increasing order, e.g. ``factorize(784, 4) == [7, 7, 4, 4]``,
    ``factorize(10, 4) == [5, 2, 1, 1]``. Reorder as you like for a TT layout (the
    authors' MNIST net uses [4, 7, 7, 4] and [1, 5, 2, 1]).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"factorize: n must be a positive int, got {n!r}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"factorize: k must be a positive int, got {k!r}")
    n, k = int(n), int(k)
    primes = []
    m, p = n, 2
    while p * p <= m:
        while m % p == 0:
            primes.append(p)
            m //= p
        p += 1
    if m > 1:
        primes.append(m)
    factors = [1] * k
    for p in sorted(primes, reverse=True):
        i = min(range(k), key=lambda j: factors[j])
        factors[i] *= p
    return sorted(factors, reverse=True)



def tt_svd(
    matrix: Tensor,
    out_modes: Sequence[int],
    in_modes: Sequence[int],
    ranks: int | Sequence[int],
) -> list[Tensor]:
    """TT-SVD (Oseledets 2011, Alg. 1) of a dense ``matrix`` (M×N) into TTM cores.

    The matrix is tensorized to (m_1..m_K, n_1..n_K), permuted to
    (m_1, n_1, ..., m_K, n_K) and merged to (m_1 n_1, ..., m_K n_K); successive
    truncated SVDs of the unfoldings give cores of shape (r_{k-1}, m_k, n_k, r_k).
    At the maximal ranks (:func:`max_tt_ranks`) the decomposition is exact. If an
    explicit rank exceeds what the sequential unfolding can supply, the core is
    zero-padded (still exact). Computed in the matrix's dtype and device.
    """
    out_modes = _as_modes(out_modes, "out_modes")
    in_modes = _as_modes(in_modes, "in_modes")
    if len(out_modes) != len(in_modes):
        raise ValueError(
            f"in_modes and out_modes must have the same length, got {len(in_modes)} and {len(out_modes)}"
        )
    m_tot, n_tot = math.prod(out_modes), math.prod(in_modes)
    if matrix.ndim != 2 or tuple(matrix.shape) != (m_tot, n_tot):
        raise ValueError(
            f"matrix must be {m_tot}x{n_tot} (prod(out_modes) x prod(in_modes)), got {tuple(matrix.shape)}"
        )
    rs = tt_ranks(ranks, out_modes, in_modes)
    k = len(out_modes)
    perm = [a for pair in zip(range(k), range(k, 2 * k)) for a in pair]
    t = matrix.reshape(out_modes + in_modes).permute(perm).reshape([m * n for m, n in zip(out_modes, in_modes)])
    cores = []
    c = t.reshape(1, -1)
    for i in range(k - 1):
        d = out_modes[i] * in_modes[i]
        c = c.reshape(rs[i] * d, -1)
        u, s, vh = torch.linalg.svd(c, full_matrices=False)
        r = rs[i + 1]
        avail = min(r, s.shape[0])
        u, s, vh = u[:, :avail], s[:avail], vh[:avail]
        if avail < r:  # pad: the requested rank exceeds the unfolding's rank bound
            u = torch.cat([u, u.new_zeros(u.shape[0], r - avail)], dim=1)
            s = torch.cat([s, s.new_zeros(r - avail)])
            vh = torch.cat([vh, vh.new_zeros(r - avail, vh.shape[1])], dim=0)
        cores.append(u.reshape(rs[i], out_modes[i], in_modes[i], r))
        c = s[:, None] * vh
    cores.append(c.reshape(rs[k - 1], out_modes[k - 1], in_modes[k - 1], 1))
    return cores



def _ein(spec_a: str, a: Tensor, a_q: bool, spec_b: str, b: Tensor, b_q: bool, spec_out: str) -> Tensor:
    """einsum with an optional leading perturbation axis 'q' on either operand."""
    out_q = a_q or b_q
    expr = f"{'q' if a_q else ''}{spec_a},{'q' if b_q else ''}{spec_b}->{'q' if out_q else ''}{spec_out}"
    return torch.einsum(expr, a, b)



def merge_left(cores: Sequence[Tensor], stacked: Sequence[bool]) -> tuple[Tensor, bool]:
    """G_1 ⋯ G_j (j ≥ 1 cores, the first with r_0 = 1) as (q?, M_j, N_j, r_j): rows and
    columns are the row-major multi-indices of the merged modes."""
    left, l_q = cores[0][..., 0, :, :, :], stacked[0]  # (q?, m1, n1, r1)
    for g, g_q in zip(cores[1:], stacked[1:]):
        left = _ein("IJa", left, l_q, "aijc", g, g_q, "IiJjc")
        l_q = l_q or g_q
        sh = left.shape
        left = left.reshape(*sh[:-5], sh[-5] * sh[-4], sh[-3] * sh[-2], sh[-1])
    return left, l_q


def merge_right(cores: Sequence[Tensor], stacked: Sequence[bool]) -> tuple[Tensor, bool]:
    """G_j ⋯ G_K (the last with r_K = 1) as (q?, r_{j-1}, M, N)."""
    right, r_q = cores[-1][..., 0], stacked[-1]  # (q?, r, mK, nK)
    for g, g_q in zip(reversed(cores[:-1]), reversed(stacked[:-1])):
        right = _ein("aijc", g, g_q, "cIJ", right, r_q, "aiIjJ")
        r_q = r_q or g_q
        sh = right.shape
        right = right.reshape(*sh[:-5], sh[-5], sh[-4] * sh[-3], sh[-2] * sh[-1])
    return right, r_q


def _reconstruct(cores: Sequence[Tensor], stacked: Sequence[bool]) -> tuple[Tensor, bool]:
    """Dense W (M, N), or (q, M, N) when any core carries a leading q axis.

    The cores are merged into a left half L (M_L, N_L, r) and a right half
    R (r, M_R, N_R) (both small), then W[(I,i),(J,j)] = Σ_a L[I,J,a] R[a,i,j]: one
    GEMM with M·N outputs and one permute copy. Cost ≈ M·N·r_h multiply-adds plus
    the (small) halves.
    """
    k = len(cores)
    if k == 1:
        return cores[0][..., 0, :, :, 0], stacked[0]
    h = k // 2
    left, l_q = merge_left(cores[:h], stacked[:h])
    right, r_q = merge_right(cores[h:], stacked[h:])
    w = _ein("IJa", left, l_q, "aij", right, r_q, "IiJj")
    sh = w.shape
    return w.reshape(*sh[:-4], sh[-4] * sh[-3], sh[-2] * sh[-1]), l_q or r_q



def _contract(cores: Sequence[Tensor], stacked: Sequence[bool], x: Tensor, x_q: bool) -> tuple[Tensor, bool]:
    """y = x Wᵀ computed core by core, W never formed.

    x: (q?, B, N); returns (q?, B, M). Before step k the state has layout
    (q?, P, S, r_{k-1}, n_k) with P = B·m_1···m_{k-1} and S = n_{k+1}···n_K, so step k
    is one GEMM (P·S, r_{k-1} n_k) @ (r_{k-1} n_k, m_k r_k) followed by one permute
    copy into the next layout. Work per sample: Σ_k M_{<k} N_{>k} r_{k-1} m_k n_k r_k
    multiply-adds. A stacked state meeting a shared core folds q into the rows; a
    shared state meeting a stacked core does a single GEMM against all q cores side by
    side; only stacked × stacked needs a batched matmul. The state stays unstacked
    until the first stacked core (or a stacked x).
    """
    n = [g.shape[-2] for g in cores]
    k = len(cores)
    b = x.shape[-2]
    s = x.shape[-1] // n[0]
    t = x.reshape(*x.shape[:-2], b, n[0], s).transpose(-1, -2)  # (q?, B, S, n1), r0 = 1
    t_q = x_q
    p = b
    for i, (g, g_q) in enumerate(zip(cores, stacked)):
        a, m, nk, c = g.shape[-4:]
        q_front = True
        if not g_q:
            gm = g.permute(0, 2, 1, 3).reshape(a * nk, m * c)
            y = t.reshape(-1, a * nk) @ gm  # (q?·P·S, m·c)
        elif not t_q:
            q = g.shape[0]
            gm = g.permute(1, 3, 0, 2, 4).reshape(a * nk, q * m * c)
            y = t.reshape(p * s, a * nk) @ gm  # (P·S, q·m·c)
            q_front = False
        else:
            q = g.shape[0]
            gm = g.permute(0, 1, 3, 2, 4).reshape(q, a * nk, m * c)
            y = torch.bmm(t.reshape(q, p * s, a * nk), gm)
        now_q = t_q or g_q
        if i + 1 < k:
            n2 = n[i + 1]
            s2 = s // n2
            if not now_q:
                t = y.view(p, n2, s2, m, c).permute(0, 3, 2, 4, 1)
            elif q_front:
                t = y.view(-1, p, n2, s2, m, c).permute(0, 1, 4, 3, 5, 2)
            else:
                t = y.view(p, n2, s2, -1, m, c).permute(3, 0, 4, 2, 5, 1)
            t = t.reshape(*t.shape[:-5], p * m, s2, c, n2)  # the one copy of this step
            s = s2
        else:  # S = 1, r_K = 1
            if not now_q:
                t = y.reshape(b, -1)
            elif q_front:
                t = y.reshape(-1, b, p // b * m)
            else:
                t = y.view(p, -1, m).transpose(0, 1).reshape(-1, b, p // b * m)
        t_q = now_q
        p *= m
    return t, t_q
