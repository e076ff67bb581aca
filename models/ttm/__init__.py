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

from .decomposition import factorize, max_tt_ranks, tt_ranks, tt_svd
from .layer import TTLinear
from .mlp import TTMLP, parameter_report

__all__ = [
    "TTLinear",
    "TTMLP",
    "factorize",
    "tt_svd",
    "tt_ranks",
    "max_tt_ranks",
    "parameter_report",
]
