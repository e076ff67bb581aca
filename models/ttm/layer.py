"""The tensor-train-matrix linear layer :class:`TTLinear` (see :mod:`edgezo.models.ttm`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .decomposition import _as_modes, _contract, _reconstruct, tt_ranks, tt_svd

__all__ = ["TTLinear"]

_MODES = ("auto", "contract", "dense")

# The cost model behind ``mode="auto"`` (see TTLinear's docstring), in units of one
# multiply-add of a large dense GEMM, fitted to CPU timings:
_CONTRACT_COST_PER_MAC = 5.0  # the core-by-core chain: small GEMMs + a permute copy per step
_RECON_COST_PER_ENTRY = 55.0  # rebuilding W: an inner-dim-r GEMM + a permute copy, memory bound


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
        ranks: int | Sequence[int],
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
        ranks: int | Sequence[int],
        *,
        mode: str = "auto",
    ) -> TTLinear:
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

    def _stacked_inputs(self, cores, bias, x: Tensor, q: int | None):
        """Check :meth:`forward_stacked`'s arguments: (cores, stacked flags, bias, bias stacked, x stacked, q)."""
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
        return use, stacked, b, b_q, x_q, nq

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
        use, stacked, b, b_q, x_q, nq = self._stacked_inputs(cores, bias, x, q)
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
