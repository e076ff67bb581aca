"""DnCNN denoiser and convolutional autoencoder (models/denoiser.py)."""

import pytest
import torch
from edgezo.models import build_model
from edgezo.models.denoiser import ConvAutoencoder, DnCNN


def test_dncnn_is_residual_and_keeps_shape():
    d = DnCNN(channels=3, width=8, depth=4)
    x = torch.rand(5, 3, 6, 10)
    assert d(x).shape == x.shape
    with torch.no_grad():  # zero noise prediction -> identity
        d.body[-1].weight.zero_()
        d.body[-1].bias.zero_()
    assert torch.equal(d(x), x)


def test_dncnn_rejects_bad_input_and_options():
    with pytest.raises(ValueError, match="depth"):
        DnCNN(depth=1)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        DnCNN(channels=1)(torch.rand(2, 3, 8, 8))


def test_autoencoder_shapes_and_latent_size():
    ae = ConvAutoencoder((1, 8, 8), latent_dim=12, width=8)
    x = torch.rand(4, 1, 8, 8)
    z = ae.encode(x)
    assert z.shape == (4, 12)
    assert ae.decode(z).shape == x.shape
    assert ae(x).shape == x.shape
    with pytest.raises(ValueError, match="even"):
        ConvAutoencoder((1, 7, 8), latent_dim=4)
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        ae.encode(torch.rand(4, 64))
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        ae.decode(torch.rand(4, 5))


def test_registered_builders():
    assert isinstance(build_model({"kind": "dncnn", "channels": 1, "width": 4, "depth": 3}), DnCNN)
    ae = build_model({"kind": "autoencoder", "image_shape": [3, 4, 4], "latent_dim": 6})
    assert isinstance(ae, ConvAutoencoder) and ae.latent_dim == 6


def test_autoencoder_learns_to_reconstruct(digits):
    """Adam on reconstruction: the loss on a fixed digits batch falls by more than half in 150 steps."""
    x = digits.x_train[:64].view(-1, 1, 8, 8)
    ae = ConvAutoencoder((1, 8, 8), latent_dim=16, width=16)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(torch.nn.functional.mse_loss(ae(x), x))
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(ae(x), x)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
