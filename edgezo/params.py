"""Parameter spaces: the trainable parameters of a module as named groups.

A :class:`ParamSpace` orders the trainable parameters of a ``torch.nn.Module``
into *groups* (selected by name patterns) and gives every parameter entry a
flat index. Flat order is: groups in declaration order, and inside a group the
parameters in ``module.named_parameters()`` order. Each group is therefore a
contiguous slice ``[offset, offset + numel)`` of the flat vector, which is what
the portable direction generator (:mod:`edgezo.directions`) indexes: the
perturbation of a group with seed ``s`` is the restriction of the full-space
direction ``z(s)`` to that slice, so a remote device needs only the seed.

Groups are the unit that estimators perturb (layer-wise perturbation) and that a
hybrid schedule assigns estimators to.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ParamEntry:
    """One parameter tensor inside the flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int
    group: str


@dataclass(frozen=True)
class GroupInfo:
    """A named, contiguous slice of the flat parameter vector."""

    name: str
    offset: int
    numel: int
    params: tuple[str, ...]

    @property
    def stop(self) -> int:
        return self.offset + self.numel


@dataclass(frozen=True)
class ParamLayout:
    """Backend-independent description of a parameter space.

    Everything an estimator or a remote oracle needs to know about the
    parameters: names, shapes, flat offsets and groups. It holds no tensors.
    """

    entries: tuple[ParamEntry, ...]
    groups: tuple[GroupInfo, ...]

    @property
    def dim(self) -> int:
        return sum(e.numel for e in self.entries)

    def group(self, name: str | None) -> GroupInfo:
        """The group called ``name``; ``None`` means the whole space."""
        if name is None:
            return GroupInfo("all", 0, self.dim, tuple(e.name for e in self.entries))
        for g in self.groups:
            if g.name == name:
                return g
        known = ", ".join(g.name for g in self.groups)
        raise KeyError(f"unknown parameter group {name!r}; known groups: {known}")

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def counts(self) -> dict[str, int]:
        return {g.name: g.numel for g in self.groups}

    def entry(self, name: str) -> ParamEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"unknown parameter {name!r}")

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat`` (``(..., dim)``) per parameter, shaped ``(..., *shape)``."""
        if flat.shape[-1] != self.dim:
            raise ValueError(f"flat vector has {flat.shape[-1]} entries, the space has {self.dim}")
        lead = flat.shape[:-1]
        return {
            e.name: flat[..., e.offset : e.offset + e.numel].reshape(*lead, *e.shape)
            for e in self.entries
        }


GroupSpec = str | Mapping[str, Sequence[str] | str] | None


def _assign_groups(names: Sequence[str], module: torch.nn.Module, spec: GroupSpec) -> dict[str, list[str]]:
    if spec is None or spec == "all":
        return {"all": list(names)}
    if spec == "per_tensor":
        return {n: [n] for n in names}
    if spec == "per_module":
        groups: dict[str, list[str]] = {}
        for n in names:
            owner = n.rsplit(".", 1)[0] if "." in n else n
            groups.setdefault(owner, []).append(n)
        return groups
    if isinstance(spec, str):
        raise ValueError(
            f"unknown group spec {spec!r}: use 'all', 'per_tensor', 'per_module' "
            "or a mapping {group: [name patterns]}"
        )
    groups = {}
    taken: dict[str, str] = {}
    for gname, patterns in spec.items():
        pats = [patterns] if isinstance(patterns, str) else list(patterns)
        members = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]
        if not members:
            raise ValueError(
                f"parameter group {gname!r} with patterns {pats} matches no trainable parameter; "
                f"parameters are: {', '.join(names)}"
            )
        for n in members:
            if n in taken:
                raise ValueError(f"parameter {n!r} matches both group {taken[n]!r} and {gname!r}")
            taken[n] = gname
        groups[gname] = members
    rest = [n for n in names if n not in taken]
    if rest:
        if "rest" in groups:
            raise ValueError("a group named 'rest' is reserved for parameters no pattern matched")
        groups["rest"] = rest
    return groups


class ParamSpace:
    """The trainable parameters of ``module`` as named groups over one flat vector.

    Args:
        module: the model; only parameters with ``requires_grad`` are included.
        groups: ``"all"`` (one group, the default), ``"per_tensor"``,
            ``"per_module"``, or a mapping ``{group: [fnmatch patterns]}``;
            parameters no pattern matches form the group ``"rest"``.
    """

    def __init__(self, module: torch.nn.Module, groups: GroupSpec = None):
        self.module = module
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the module has no trainable parameters")
        by_name = dict(named)
        assignment = _assign_groups([n for n, _ in named], module, groups)
        entries, infos, offset = [], [], 0
        self._params: list[torch.nn.Parameter] = []
        for gname, members in assignment.items():
            start = offset
            for n in members:
                p = by_name[n]
                entries.append(ParamEntry(n, tuple(p.shape), offset, p.numel(), gname))
                self._params.append(p)
                offset += p.numel()
            infos.append(GroupInfo(gname, start, offset - start, tuple(members)))
        self.layout = ParamLayout(tuple(entries), tuple(infos))

    # --- sizes -------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.layout.dim

    def counts(self) -> dict[str, int]:
        """Number of trainable entries per group."""
        return self.layout.counts()

    @property
    def group_names(self) -> tuple[str, ...]:
        return self.layout.group_names

    def parameters(self) -> list[torch.nn.Parameter]:
        """The parameters in flat order (hand these to a torch.optim optimizer)."""
        return list(self._params)

    def named_parameters(self) -> Iterable[tuple[str, torch.nn.Parameter]]:
        return zip((e.name for e in self.layout.entries), self._params)

    @property
    def device(self) -> torch.device:
        return self._params[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self._params[0].dtype

    # --- flat views --------------------------------------------------------
    def _selected(self, group: str | None):
        g = self.layout.group(group)
        return [(e, p) for e, p in zip(self.layout.entries, self._params) if g.offset <= e.offset < g.stop]

    def get_flat(self, group: str | None = None) -> torch.Tensor:
        """A copy of the parameters (of one group, or all) as a 1-D tensor."""
        with torch.no_grad():
            return torch.cat([p.detach().reshape(-1) for _, p in self._selected(group)])

    def set_flat(self, values: torch.Tensor, group: str | None = None) -> None:
        """Overwrite the parameters (of one group, or all) from a 1-D tensor."""
        sel = self._selected(group)
        need = sum(e.numel for e, _ in sel)
        if values.dim() != 1 or values.numel() != need:
            raise ValueError(f"expected a 1-D tensor of {need} values, got shape {tuple(values.shape)}")
        pos = 0
        with torch.no_grad():
            for e, p in sel:
                p.copy_(values[pos : pos + e.numel].view(e.shape))
                pos += e.numel

    def set_grad_flat(self, grad: torch.Tensor) -> None:
        """Write a dense gradient estimate into ``.grad`` of every parameter."""
        if grad.dim() != 1 or grad.numel() != self.dim:
            raise ValueError(f"expected a 1-D gradient of {self.dim} values, got shape {tuple(grad.shape)}")
        for e, p in zip(self.layout.entries, self._params):
            g = grad[e.offset : e.offset + e.numel].view(e.shape).to(device=p.device, dtype=p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)

    def state(self) -> dict[str, torch.Tensor]:
        """Name → detached parameter tensor (no copy)."""
        return {e.name: p.detach() for e, p in zip(self.layout.entries, self._params)}

    def __repr__(self) -> str:
        groups = ", ".join(f"{g.name}={g.numel}" for g in self.layout.groups)
        return f"ParamSpace(dim={self.dim}, groups=[{groups}])"


def layout_from_shapes(shapes: Mapping[str, Sequence[int]], groups: GroupSpec = None) -> ParamLayout:
    """The :class:`ParamLayout` of named tensors held outside torch (e.g. ONNX initializers).

    ``shapes`` gives the parameters in order; ``groups`` is a :class:`ParamSpace`
    group spec over those names. Flat order and offsets follow the same rules as
    :class:`ParamSpace`.
    """
    names = list(shapes)
    if not names:
        raise ValueError("no parameters")
    entries, infos, offset = [], [], 0
    for gname, members in _assign_groups(names, None, groups).items():
        start = offset
        for n in members:
            shape = tuple(int(d) for d in shapes[n])
            numel = 1
            for d in shape:
                numel *= d
            entries.append(ParamEntry(n, shape, offset, numel, gname))
            offset += numel
        infos.append(GroupInfo(gname, start, offset - start, tuple(members)))
    return ParamLayout(tuple(entries), tuple(infos))
