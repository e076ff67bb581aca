import pytest
import torch
from torch import nn

from edgezo.estimators import FirstOrder, build_estimator
from edgezo.losses import cross_entropy
from edgezo.oracles.torch_oracle import TorchOracle


def _oracle():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    oracle = TorchOracle(net, cross_entropy, groups={"hidden": "0.*", "last": "2.*"})
    batch = (torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,)))
    return net, oracle, batch


def test_fo_restricted_to_groups_keeps_their_autograd_gradient_and_zeroes_the_rest():
    net, oracle, batch = _oracle()
    full = FirstOrder().estimate(oracle, batch, step=0, seed=0).dense
    last = oracle.layout.group("last")
    only_last = build_estimator({"kind": "fo", "groups": ["last"]}).estimate(oracle, batch, step=0, seed=0).dense
    assert torch.equal(only_last[last.offset:last.stop], full[last.offset:last.stop])
    assert torch.count_nonzero(only_last[: last.offset]) == 0 and last.offset == 5 * 6 + 6
    assert torch.count_nonzero(full[: last.offset]) > 0


def test_fo_groups_errors_name_the_groups():
    _, oracle, batch = _oracle()
    with pytest.raises(ValueError, match="the groups are: hidden, last"):
        FirstOrder(groups=["output"]).estimate(oracle, batch, step=0, seed=0)
    with pytest.raises(ValueError, match="at least one"):
        FirstOrder(groups=[])
    assert repr(FirstOrder(groups="last")) == "FirstOrder(groups=['last'])" and repr(FirstOrder()) == "FirstOrder()"
