"""An MLP of tensor-train (TTLinear) and dense layers with a stacked forward, and parameter reports.

See docs/methods/tensor-train-zo.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..activations import get_activation
from .decomposition import factorize
from .layer import TTLinear, _stacked_matmul

LayerSpec = tuple[Sequence[int], Sequence[int], int | Sequence[int]] | tuple[int, int]


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
        activation: str | Callable[[Tensor], Tensor] = "relu",
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
    ) -> TTMLP:
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
                raise ValueError(f"params[{name!r}] must have shape (q, {', '.join(map(str, shape))}), "
                                 f"got {tuple(t.shape)}")
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

    def forward_coordinates(self, name: str, index: Tensor, delta: Tensor, x: Tensor) -> Tensor:
        """Outputs (q, B, out_features) of q copies whose parameter ``name`` has flat entry
        ``index[i]`` moved by ``delta[i]``; equals :meth:`forward_stacked` on those copies.

        Layers before the perturbed one run once. The perturbed layer is linear in the
        entry, so only its changed outputs are formed (:mod:`.coordinates`: M / m_k of them
        for a TT core, one for a bias or dense weight); the next layer adds their effect to
        its unperturbed output, Δy = W_next[:, S] (act(z_S + Δz_S) − act(z_S)); later layers
        run on the q copies. This needs an elementwise activation (every built-in one is).
        """
        from .coordinates import chunk_size, layer_changes, scatter_changes, units_changed

        prefix, _, param = name.rpartition(".")
        parts = prefix.split(".")
        if len(parts) != 2 or parts[0] != "layers" or not parts[1].isdigit() or int(parts[1]) >= len(self.layers):
            raise ValueError(f"unknown parameter {name!r}; names look like layers.0.core1 or layers.1.bias")
        li = int(parts[1])
        h = self._prep(x)
        last = len(self.layers) - 1
        for layer in self.layers[:li]:
            h = self._act(layer(h))
        layer = self.layers[li]
        z0 = layer(h)
        step = chunk_size(h.shape[0], units_changed(layer, param))
        if li < last:
            after = self._act(z0)
            nxt = self.layers[li + 1]
            w_next = nxt.dense_weight() if isinstance(nxt, TTLinear) else nxt.weight
            y0 = nxt(after)
        outs = []
        for lo in range(0, index.numel(), step):
            units, before, values = layer_changes(layer, param, index[lo:lo + step], delta[lo:lo + step], h, z0)
            if li == last:
                outs.append(scatter_changes(z0, units, values))
                continue
            y = y0 + torch.bmm(self._act(values) - self._act(before), w_next.t()[units])
            for k in range(li + 2, last + 1):
                y = self.layers[k](self._act(y))
            outs.append(y)
        return torch.cat(outs)



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
