"""Tensor-train-matrix (TTM) linear layers.

A weight matrix W ∈ R^{M×N}, M = Π_k m_k (``out_modes``), N = Π_k n_k
(``in_modes``), is stored as K cores G_k ∈ R^{r_{k-1} × m_k × n_k × r_k} with
r_0 = r_K = 1 (Oseledets 2011, "Tensor-train decomposition"; Novikov et al.
2015, "Tensorizing neural networks")::

    W[(i_1..i_K), (j_1..j_K)] = G_1[:, i_1, j_1, :] G_2[:, i_2, j_2, :] ··· G_K[:, i_K, j_K, :]

Row index i = (i_1, ..., i_K) and column index j = (j_1, ..., j_K) are
row-major multi-indices (i_1 most significant), i.e. ``W.reshape(out_modes +
in_modes)`` is the tensorized matrix (the same convention as tensorly's
``tt_matrix_to_tensor``).

This is the weight format of the tensor-compressed BP-free training of Zhao,
Yu, Chen, Liu, Liu & Zhang (2023), arXiv:2308.09858: zeroth-order
perturbations act on the cores, so the perturbed dimension is the core size
(~10^3) instead of M·N (~10^5).

Public API
----------
``TTLinear``            the layer (``forward``, ``forward_stacked``, ``dense_weight``,
                        ``from_linear``, ``compression_report``)
``TTMLP``               an MLP of TTLinear / nn.Linear layers with ``forward_stacked``
``factorize``           k balanced factors of n, to shape TT modes
``tt_svd``              TT-SVD of a dense matrix into TTM cores
``tt_ranks``            full rank vector (1, r_1, ..., r_{K-1}, 1) from an int or a sequence
``parameter_report``    TT vs dense parameter counts of any module
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from .activations import get_activation

__all__ = [
    "TTLinear",
    "TTMLP",
    "factorize",
    "tt_svd",
    "tt_ranks",
    "max_tt_ranks",
    "parameter_report",
]

_MODES = ("auto", "contract", "dense")

# The cost model behind ``mode="auto"`` (see TTLinear's docstring), in units of one
# multiply-add of a large dense GEMM, fitted to CPU timings:
_CONTRACT_COST_PER_MAC = 5.0  # the core-by-core chain: small GEMMs + a permute copy per step
_RECON_COST_PER_ENTRY = 55.0  # rebuilding W: an inner-dim-r GEMM + a permute copy, memory bound


# --------------------------------------------------------------------------- helpers


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
    ranks: Union[int, Sequence[int]], out_modes: Sequence[int], in_modes: Sequence[int]
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
    ranks: Union[int, Sequence[int]],
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
    left, l_q = cores[0][..., 0, :, :, :], stacked[0]  # (q?, m1, n1, r1)
    for g, g_q in zip(cores[1:h], stacked[1:h]):
        left = _ein("IJa", left, l_q, "aijc", g, g_q, "IiJjc")
        l_q = l_q or g_q
        sh = left.shape
        left = left.reshape(*sh[:-5], sh[-5] * sh[-4], sh[-3] * sh[-2], sh[-1])
    right, r_q = cores[k - 1][..., 0], stacked[k - 1]  # (q?, r, mK, nK)
    for g, g_q in zip(reversed(cores[h:k - 1]), reversed(stacked[h:k - 1])):
        right = _ein("aijc", g, g_q, "cIJ", right, r_q, "aiIjJ")
        r_q = r_q or g_q
        sh = right.shape
        right = right.reshape(*sh[:-5], sh[-5], sh[-4] * sh[-3], sh[-2] * sh[-1])
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


# --------------------------------------------------------------------------- the layer


class TTLinear(nn.Module):
    r"""Linear layer y = x Wᵀ + b with W ∈ R^{M×N} in tensor-train-matrix format.

    Parameters
    ----------
    in_modes, out_modes
        N = Π in_modes (input features), M = Π out_modes (output features); same
        length K (the number of cores). A mode of 1 is allowed.
    ranks
        An int (every inner TT rank, capped at the maximal TT ranks the modes allow,
        see :func:`max_tt_ranks`), or the K-1 inner ranks, or all K+1 ranks.
    bias
        Add a learnable bias of shape (M,).
    mode
        ``"auto"`` | ``"contract"`` | ``"dense"`` (keyword; also a settable attribute).

    Parameters are registered as ``core0 .. core{K-1}`` (shape (r_{k-1}, m_k, n_k, r_k))
    and ``bias``, so name patterns like ``"*.core1"`` select one core of every layer.

    Parameter counts
    ----------------
    Σ_k r_{k-1} m_k n_k r_k for the cores, plus M for the bias. The MNIST net of
    arXiv:2308.09858 (784→256→10, modes [4,7,7,4]→[4,4,4,4] and [4,4,4,4]→[1,5,2,1],
    rank 4) has 1,024 + 480 = **1,504 core parameters** (the paper's number, which
    **excludes biases**) against 200,704 + 2,560 = 203,264 dense weights (~135×);
    with the biases (256 + 10) the trainable count is **1,770** (dense with
    biases: 203,530).

    Initialization
    --------------
    Core entries are i.i.d. N(0, σ_k²). W_ij is a sum over the Π_{k=1}^{K-1} r_k rank
    paths (α_1..α_{K-1}) of products of K independent zero-mean entries, one per core.
    Two different paths differ in at least one core entry, so their products are
    uncorrelated, hence exactly::

        Var(W_ij) = (Π_{k=1}^{K-1} r_k) · Π_{k=1}^{K} σ_k².

    The same argument shows distinct entries W_ij, W_i'j' are uncorrelated, so for any
    input Var(y_i | x) = Var(W_ij)·‖x‖² exactly as for a dense layer. We match
    PyTorch's ``nn.Linear`` default (kaiming-uniform with a=√5: U(±1/√N), variance
    v = 1/(3N)) by choosing::

        σ_k² = v^{1/K} / sqrt(r_{k-1} r_k)

    (Π_k sqrt(r_{k-1} r_k) = Π_{k=1}^{K-1} r_k because r_0 = r_K = 1), which balances the
    scale across cores. The bias is U(±1/√N) as in ``nn.Linear``. Only the second
    moment matches: W_ij is a sum of products of Gaussians (heavier-tailed than uniform).

    Forward paths and ``mode="auto"``
    ---------------------------------
    ``"contract"`` reshapes x to (B, n_1..n_K) and contracts core by core (W is never
    formed): K GEMMs, each followed by a permute copy, F_c = Σ_k M_{<k} N_{>k}
    r_{k-1} m_k n_k r_k multiply-adds per sample. ``"dense"`` rebuilds W from the
    cores (≈ M·N·r multiply-adds plus a permute copy of W, independent of the batch)
    and does one GEMM (B·M·N). ``"auto"`` (the default) picks contract iff::

        5 · B · F_c  <  (55 + B) · M · N

    i.e. one multiply-add of the contraction chain costs ~5 of a large GEMM's, and
    rebuilding W costs ~55 GEMM multiply-adds per entry of W (memory-bound: an
    inner-dimension-r GEMM and a permute). Both constants were fitted to the timings
    below; the per-call overheads of the two paths are similar (~20 µs + ~20 µs per
    core) and cancel. For ``forward_stacked`` the same rule is applied per copy.

    Measured with torch 2.13 CPU, float32, no autograd, 1 thread, min over 25
    interleaved rounds, µs per forward, contract / dense (the 2-core host was shared
    with other jobs at load 3-5, so 2-thread timings had 20-30 ms stalls and were
    discarded; a second 1-thread run gave the same ratios within ~20 %)::

        layer (rank 4 unless noted)        B=1        B=4        B=16       B=64        B=2000
        784→256 [4,7,7,4]→[4,4,4,4]     90 / 217  133 / 240  263 / 320  885 / 493  31544 / 6054
        256→10  [4,4,4,4]→[1,5,2,1]     74 / 90    82 / 94   113 / 95   195 / 103   3606 / 285
        64→32   [4,4,4]→[2,4,4]         65 / 73    67 / 71    74 / 71   100 / 71    1269 / 136
        64→32   [8,8]→[4,8]             46 / 47    47 / 46    49 / 45    63 / 47     641 / 108
        784→1024 [4,7,7,4]→[4,8,8,4] r6 121 / 761  211 / 894  567 / 1005 2030 / 1500 174837 / 21750
        512→512 [8,8,8]→[8,8,8]         71 / 277   96 / 269  217 / 380  542 / 805  32558 / 8346

    The rule picks contract for B ≤ 16 and dense for B ≥ 64 on the 784→256 layer
    (predicted crossover B ≈ 40), contract only at B = 1 for 256→10 and up to B = 4
    for the 64→32 layers, and dense at B = 2000 everywhere. Every large win (2-6×
    for contract at small batch, 5-15× for dense at B = 2000) is picked; the misses
    are near-ties (≤ 15 %) except 512→512 at B = 64 (contract 1.5× faster, crossover
    predicted at 63). At B = 2000 the contraction chain is memory-bound (its
    intermediate states are several times the size of x).
    """

    def __init__(
        self,
        in_modes: Sequence[int],
        out_modes: Sequence[int],
        ranks: Union[int, Sequence[int]],
        bias: bool = True,
        *,
        mode: str = "auto",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        in_modes = _as_modes(in_modes, "in_modes")
        out_modes = _as_modes(out_modes, "out_modes")
        if len(in_modes) != len(out_modes):
            raise ValueError(
                f"in_modes and out_modes must have the same length (one pair per core), "
                f"got in_modes={in_modes} and out_modes={out_modes}"
            )
        self.in_modes = in_modes
        self.out_modes = out_modes
        self.in_features = math.prod(in_modes)
        self.out_features = math.prod(out_modes)
        self.ranks = tt_ranks(ranks, out_modes, in_modes)
        self.num_cores = len(in_modes)
        self.mode = mode
        factory = {"dtype": dtype, "device": device}
        for k in range(self.num_cores):
            shape = (self.ranks[k], out_modes[k], in_modes[k], self.ranks[k + 1])
            self.register_parameter(f"core{k}", nn.Parameter(torch.empty(shape, **factory)))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self._costs = self._cost_terms()
        self.reset_parameters()

    # ---------------------------------------------------------------- basics

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {value!r}")
        self._mode = value

    @property
    def cores(self) -> list[nn.Parameter]:
        return [getattr(self, f"core{k}") for k in range(self.num_cores)]

    def init_std(self, target_var: float | None = None) -> list[float]:
        """Per-core std σ_k with (Π_{k=1}^{K-1} r_k)·Π_k σ_k² = target_var (default 1/(3N))."""
        v = 1.0 / (3.0 * self.in_features) if target_var is None else float(target_var)
        k = self.num_cores
        return [
            math.sqrt(v ** (1.0 / k) / math.sqrt(self.ranks[i] * self.ranks[i + 1])) for i in range(k)
        ]

    def reset_parameters(self, target_var: float | None = None) -> None:
        """Cores N(0, σ_k²) so that Var(W_ij) = target_var (default 1/(3N), like nn.Linear)."""
        with torch.no_grad():
            for core, std in zip(self.cores, self.init_std(target_var)):
                core.normal_(0.0, std)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.in_features)
                self.bias.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        s = (
            f"in_modes={list(self.in_modes)}, out_modes={list(self.out_modes)}, "
            f"ranks={list(self.ranks)}, bias={self.bias is not None}"
        )
        if self.mode != "auto":
            s += f", mode={self.mode!r}"
        return s

    # ---------------------------------------------------------------- cost model

    def _cost_terms(self) -> tuple[float, float]:
        """(F_c, M·N): per-sample multiply-adds of the contract chain and of the dense GEMM."""
        m, n, r, k = self.out_modes, self.in_modes, self.ranks, self.num_cores
        fc = sum(
            math.prod(m[:i]) * math.prod(n[i + 1 :]) * r[i] * m[i] * n[i] * r[i + 1] for i in range(k)
        )
        return float(fc), float(self.out_features * self.in_features)

    def _auto_dense(self, batch: int) -> bool:
        """True when the dense path is predicted at least as fast for ``batch`` rows
        (per perturbed copy: both costs scale with the number of copies)."""
        fc, mn = self._costs
        return _CONTRACT_COST_PER_MAC * batch * fc >= (_RECON_COST_PER_ENTRY + batch) * mn

    def choose_path(self, batch: int) -> str:
        """The path ("contract" or "dense") that ``forward`` uses for this batch size."""
        if self.mode != "auto":
            return self.mode
        return "dense" if self._auto_dense(batch) else "contract"

    # ---------------------------------------------------------------- weights

    def dense_weight(self) -> Tensor:
        """The dense W (out_features × in_features) reconstructed from the cores."""
        w, _ = _reconstruct(self.cores, [False] * self.num_cores)
        return w

    def stacked_weight(self, cores: Sequence[Tensor | None]) -> tuple[Tensor, bool]:
        """W from ``cores`` (each (q, *core.shape), core.shape or None = own): ((q?, M, N), stacked?)."""
        use = [own if c is None else c for c, own in zip(cores, self.cores)]
        return _reconstruct(use, [c is not None and c.ndim == 5 for c in cores])

    def num_tt_params(self) -> int:
        return sum(c.numel() for c in self.cores)

    def compression_report(self) -> dict:
        """Counts for this layer: ``tt_params`` (cores), ``bias_params``, ``params``
        (trainable total), ``dense_params`` (M·N), ``dense_params_with_bias`` and
        ``ratio`` = dense_params / tt_params (weights only, biases excluded)."""
        tt = self.num_tt_params()
        nb = 0 if self.bias is None else self.bias.numel()
        dense = self.out_features * self.in_features
        return {
            "tt_params": tt,
            "bias_params": nb,
            "params": tt + nb,
            "dense_params": dense,
            "dense_params_with_bias": dense + nb,
            "ratio": dense / tt,
        }

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        in_modes: Sequence[int],
        out_modes: Sequence[int],
        ranks: Union[int, Sequence[int]],
        *,
        mode: str = "auto",
    ) -> "TTLinear":
        """Compress a (trained) ``nn.Linear`` by TT-SVD (:func:`tt_svd`); copies the bias.

        The result has the dtype and device of ``linear.weight``. At the maximal
        ranks the reconstruction is exact up to round-off.
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        in_modes = _as_modes(in_modes, "in_modes")
        out_modes = _as_modes(out_modes, "out_modes")
        if math.prod(in_modes) != linear.in_features or math.prod(out_modes) != linear.out_features:
            raise ValueError(
                f"modes do not match the linear layer: prod(in_modes)={math.prod(in_modes)} vs "
                f"in_features={linear.in_features}, prod(out_modes)={math.prod(out_modes)} vs "
                f"out_features={linear.out_features}"
            )
        w = linear.weight.detach()
        layer = cls(
            in_modes,
            out_modes,
            ranks,
            bias=linear.bias is not None,
            mode=mode,
            dtype=w.dtype,
            device=w.device,
        )
        cores = tt_svd(w, out_modes, in_modes, layer.ranks)
        with torch.no_grad():
            for p, c in zip(layer.cores, cores):
                p.copy_(c)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    # ---------------------------------------------------------------- forward

    def _check_x(self, x: Tensor) -> None:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"TTLinear expects input (..., {self.in_features}) (in_modes={list(self.in_modes)}), "
                f"got shape {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_x(x)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        path = self.choose_path(x2.shape[0]) if x2.shape[0] > 0 else "dense"
        if path == "dense":
            y = torch.nn.functional.linear(x2, self.dense_weight(), self.bias)
        else:
            y, _ = _contract(self.cores, [False] * self.num_cores, x2, False)
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def forward_stacked(
        self,
        cores: Sequence[Tensor | None] | None,
        bias: Tensor | None,
        x: Tensor,
        *,
        q: int | None = None,
        path: str | None = None,
    ) -> Tensor:
        """Evaluate q perturbed copies of this layer in one call; returns (q, B, M).

        ``cores``: K entries, each (q, r_{k-1}, m_k, n_k, r_k) (one core per copy),
        (r_{k-1}, m_k, n_k, r_k) (shared by all copies) or ``None`` (this module's own
        core); ``cores=None`` means all own cores. ``bias``: (q, M), (M,) shared, or
        ``None`` = this module's own bias (none if the layer was built with
        ``bias=False``). ``x``: (B, N) shared by all copies or (q, B, N).
        q is taken from the stacked arguments (or the keyword ``q`` when none is stacked).

        With a shared x, the cores before the first stacked one are contracted once
        for all copies (the usual case of perturbing one core at a time).
        ``path`` overrides the contract/dense choice (default: ``self.mode`` rule).
        """
        k = self.num_cores
        own = self.cores
        if cores is None:
            cores = [None] * k
        cores = list(cores)
        if len(cores) != k:
            raise ValueError(f"forward_stacked expects {k} cores, got {len(cores)}")
        qs: set[int] = set()
        use, stacked = [], []
        for i, (c, o) in enumerate(zip(cores, own)):
            if c is None:
                use.append(o)
                stacked.append(False)
            elif tuple(c.shape) == tuple(o.shape):
                use.append(c)
                stacked.append(False)
            elif c.ndim == 5 and tuple(c.shape[1:]) == tuple(o.shape):
                use.append(c)
                stacked.append(True)
                qs.add(c.shape[0])
            else:
                raise ValueError(
                    f"core{i} must have shape (q, {', '.join(map(str, o.shape))}) or "
                    f"{tuple(o.shape)}, got {tuple(c.shape)}"
                )
        if bias is None:
            b, b_q = self.bias, False
        elif tuple(bias.shape) == (self.out_features,):
            b, b_q = bias, False
        elif bias.ndim == 2 and bias.shape[1] == self.out_features:
            b, b_q = bias, True
            qs.add(bias.shape[0])
        else:
            raise ValueError(
                f"bias must have shape (q, {self.out_features}) or ({self.out_features},), got {tuple(bias.shape)}"
            )
        if x.ndim == 2 and x.shape[1] == self.in_features:
            x_q = False
        elif x.ndim == 3 and x.shape[2] == self.in_features:
            x_q = True
            qs.add(x.shape[0])
        else:
            raise ValueError(
                f"x must have shape (B, {self.in_features}) or (q, B, {self.in_features}), got {tuple(x.shape)}"
            )
        if q is not None:
            qs.add(int(q))
        if len(qs) > 1:
            raise ValueError(f"inconsistent perturbation axis sizes q: {sorted(qs)}")
        if not qs:
            raise ValueError("forward_stacked: nothing is stacked; pass q=... to broadcast")
        (nq,) = qs
        batch = x.shape[-2]
        if path is None:
            path = self.mode
        if path == "auto":
            path = "dense" if self._auto_dense(batch) else "contract"
        elif path not in _MODES:
            raise ValueError(f"path must be one of {_MODES}, got {path!r}")
        if batch == 0:
            path = "dense"

        if path == "dense":
            w, w_q = _reconstruct(use, stacked)
            y = _stacked_matmul(x, x_q, w, w_q)
        else:
            # with x shared, contract the unperturbed leading cores once
            y, _ = _contract(use, stacked, x, x_q)
        if y.ndim == 2:
            y = y.unsqueeze(0)
        if b is not None:
            y = y + (b.unsqueeze(1) if b_q else b)
        if y.shape[0] != nq:
            y = y.expand(nq, *y.shape[1:])
        return y


def _stacked_matmul(x: Tensor, x_q: bool, w: Tensor, w_q: bool) -> Tensor:
    """x (q?, B, N) times w (q?, M, N)ᵀ -> (q?, B, M)."""
    if not w_q:
        return x @ w.transpose(-1, -2)
    q, m, n = w.shape
    if not x_q:  # one GEMM for all copies: (B, N) @ (N, q·M)
        y = x @ w.reshape(q * m, n).t()
        return y.reshape(x.shape[0], q, m).transpose(0, 1)
    return torch.bmm(x, w.transpose(1, 2))


# --------------------------------------------------------------------------- the MLP


LayerSpec = Union[tuple[Sequence[int], Sequence[int], Union[int, Sequence[int]]], tuple[int, int]]


class TTMLP(nn.Module):
    """An MLP whose layers are :class:`TTLinear` and/or ``nn.Linear``.

    ``layer_specs``: one entry per layer, either ``(in_modes, out_modes, rank)``
    (a TTLinear) or ``(in_features, out_features)`` (a dense ``nn.Linear``).
    ``final_dense=n`` appends a dense ``nn.Linear(prev_out, n)``. The activation
    (a name in {relu, tanh, sigmoid, gelu, sin, identity} or a callable) follows every
    layer but the last. ``flatten=True`` flattens every input dim after the batch dim.
    Layers live in ``self.layers`` (ModuleList): parameter names are
    ``layers.0.core0`` … ``layers.0.bias``, ``layers.1.weight`` …

    Example (the MNIST net of arXiv:2308.09858)::

        TTMLP([([4, 7, 7, 4], [4, 4, 4, 4], 4), ([4, 4, 4, 4], [1, 5, 2, 1], 4)])
    """

    def __init__(
        self,
        layer_specs: Sequence[LayerSpec],
        activation: Union[str, Callable[[Tensor], Tensor]] = "relu",
        *,
        final_dense: int | None = None,
        bias: bool = True,
        flatten: bool = True,
        mode: str = "auto",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(activation, str):
            self._act = get_activation(activation)
            self.activation_name = activation
        elif callable(activation):
            self.activation_name = getattr(activation, "__name__", repr(activation))
            self._act = activation
        else:
            raise ValueError(f"activation must be a name or a callable, got {activation!r}")
        self.flatten = flatten
        factory = {"dtype": dtype, "device": device}
        layers: list[nn.Module] = []
        for i, spec in enumerate(layer_specs):
            spec = tuple(spec)
            if len(spec) == 2 and all(isinstance(s, int) and not isinstance(s, bool) for s in spec):
                if spec[0] < 1 or spec[1] < 1:
                    raise ValueError(f"layer {i}: dense sizes must be positive, got {spec}")
                layers.append(nn.Linear(spec[0], spec[1], bias=bias, **factory))
            elif len(spec) == 3:
                layers.append(TTLinear(spec[0], spec[1], spec[2], bias=bias, mode=mode, **factory))
            else:
                raise ValueError(
                    f"layer {i}: spec must be (in_modes, out_modes, rank) or (in_features, out_features), got {spec!r}"
                )
        if final_dense is not None:
            if not layers:
                raise ValueError("final_dense needs at least one preceding layer")
            layers.append(nn.Linear(layers[-1].out_features, int(final_dense), bias=bias, **factory))
        if not layers:
            raise ValueError("TTMLP needs at least one layer")
        for i in range(1, len(layers)):
            if layers[i].in_features != layers[i - 1].out_features:
                raise ValueError(
                    f"layer {i} expects {layers[i].in_features} inputs but layer {i - 1} "
                    f"gives {layers[i - 1].out_features}"
                )
        self.layers = nn.ModuleList(layers)
        self.in_features = layers[0].in_features
        self.out_features = layers[-1].out_features

    @classmethod
    def from_sizes(
        cls,
        sizes: Sequence[int],
        rank: int,
        *,
        num_cores: int = 4,
        dense_last: bool = True,
        **kwargs,
    ) -> "TTMLP":
        """Build from layer widths, e.g. ``[784, 256, 10]``: every layer a TTLinear with
        ``factorize(size, num_cores)`` modes (the last one dense when ``dense_last``)."""
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least two widths, got {list(sizes)}")
        specs: list = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if dense_last and i == len(sizes) - 2:
                specs.append((int(a), int(b)))
            else:
                specs.append((factorize(int(a), num_cores), factorize(int(b), num_cores), rank))
        return cls(specs, **kwargs)

    def extra_repr(self) -> str:
        return f"activation={self.activation_name!r}"

    def _prep(self, x: Tensor) -> Tensor:
        if self.flatten and x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self._prep(x)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self._act(x)
        return x

    def forward_stacked(self, params: Mapping[str, Tensor], x: Tensor, *, q: int | None = None) -> Tensor:
        """Evaluate q perturbed parameter sets at once; returns (q, B, out_features).

        ``params`` maps parameter names (``layers.0.core1``, ``layers.1.weight`` …) to
        tensors with a leading q axis (q, *param.shape); parameters not in the dict are
        the module's own, broadcast over q. ``x``: (B, in) shared, or (q, B, in); with
        ``flatten``, a shared (B, *input_shape) is flattened. Layers before the first
        perturbed one run once, unstacked (their output is the same for every copy); a
        stacked tensor whose every copy equals the module's own parameter counts as
        unperturbed (oracles stack all parameters even when a query touches one tensor).
        """
        own = dict(self.named_parameters())
        qs: set[int] = set() if q is None else {int(q)}
        for name, t in params.items():
            if name not in own:
                raise ValueError(f"unknown parameter {name!r}; known: {sorted(own)}")
            shape = tuple(own[name].shape)
            if t.ndim != len(shape) + 1 or tuple(t.shape[1:]) != shape:
                raise ValueError(f"params[{name!r}] must have shape (q, {', '.join(map(str, shape))}), got {tuple(t.shape)}")
            qs.add(t.shape[0])
        # An oracle may hand over every parameter stacked although only one tensor differs
        # between the copies (a coordinate or one-group query). Copies equal to the module's
        # own value are the module's own: dropping them lets the layers before the first
        # really perturbed one run once, unstacked (one pass of q·numel comparisons).
        params = {n: t for n, t in params.items() if not torch.equal(t, own[n].detach().expand_as(t))}
        if x.ndim == 3 and x.shape[-1] == self.in_features:
            x_q = True
            qs.add(x.shape[0])
        else:
            x = self._prep(x)
            if x.ndim != 2 or x.shape[-1] != self.in_features:
                raise ValueError(
                    f"x must have shape (B, {self.in_features}) or (q, B, {self.in_features}), got {tuple(x.shape)}"
                )
            x_q = False
        if len(qs) > 1:
            raise ValueError(f"inconsistent perturbation axis sizes q: {sorted(qs)}")
        if not qs:
            raise ValueError("forward_stacked: params is empty and x is not stacked; pass q=...")
        (nq,) = qs
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            pre = f"layers.{i}."
            mine = {n[len(pre):]: t for n, t in params.items() if n.startswith(pre)}
            if not mine and not x_q:
                x = layer(x)
            elif isinstance(layer, TTLinear):
                cores = [mine.get(f"core{k}") for k in range(layer.num_cores)]
                x = layer.forward_stacked(cores, mine.get("bias"), x, q=nq)
                x_q = True
            elif isinstance(layer, nn.Linear):
                w = mine.get("weight", layer.weight)
                b = mine.get("bias", layer.bias)
                x = _stacked_matmul(x, x_q, w, "weight" in mine)
                if x.ndim == 2:
                    x = x.unsqueeze(0)
                if b is not None:
                    x = x + (b.unsqueeze(1) if "bias" in mine else b)
                x_q = True
                if x.shape[0] != nq:
                    x = x.expand(nq, *x.shape[1:])
            else:  # pragma: no cover - only Linear/TTLinear are built
                raise TypeError(f"unsupported layer {type(layer).__name__}")
            if i < last:
                x = self._act(x)
        if not x_q:
            x = x.unsqueeze(0).expand(nq, *x.shape)
        return x


# --------------------------------------------------------------------------- reports


def parameter_report(module: nn.Module) -> dict:
    """Trainable parameter counts of ``module`` with TT layers vs their dense equivalent.

    Returns ``params`` (trainable total), ``tt_params`` (TT cores only),
    ``tt_dense_params`` (M·N of every TTLinear: the dense weights they replace),
    ``dense_equivalent_params`` (``params`` with every TTLinear's cores replaced by its
    dense weight; biases and all other parameters counted in both), and ``ratio`` =
    dense_equivalent_params / params, ``weight_ratio`` = tt_dense_params / tt_params.
    """
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    tt = 0
    tt_dense = 0
    for m in module.modules():
        if isinstance(m, TTLinear):
            tt += sum(c.numel() for c in m.cores if c.requires_grad)
            tt_dense += m.out_features * m.in_features
    dense_eq = params - tt + tt_dense
    return {
        "params": params,
        "tt_params": tt,
        "tt_dense_params": tt_dense,
        "dense_equivalent_params": dense_eq,
        "ratio": dense_eq / params if params else float("nan"),
        "weight_ratio": tt_dense / tt if tt else float("nan"),
    }
