"""Denoiser and autoencoder for denoised smoothing (ZO-AE-DS).

* :class:`DnCNN` — the residual denoiser of Zhang et al. ("Beyond a Gaussian
  Denoiser", IEEE TIP 2017) as used by denoised smoothing (Salman et al.,
  NeurIPS 2020): ``conv-ReLU, (depth-2) × (conv-BN-ReLU), conv`` predicts the
  noise ``n̂``; the output is ``D(x) = x − n̂(x)``.
* :class:`ConvAutoencoder` — a small convolutional autoencoder with a latent
  code of ``latent_dim`` entries: ``Enc: (C, H, W) → R^{d_z}``,
  ``Dec: R^{d_z} → (C, H, W)``. In ZO-AE-DS (Zhang et al., ICLR 2022,
  arXiv:2203.14195) the decoder is frozen and merged into the black box
  ``f'(z) = f(Dec(z))``, so zeroth-order estimation runs in ``d_z`` dimensions
  instead of ``C·H·W``.

Both work on image batches ``(B, C, H, W)``; H and W must be even for the
autoencoder (one stride-2 stage).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (channels, height, width), all positive; got {shape}")
    return shape  # type: ignore[return-value]


class DnCNN(nn.Module):
    """Residual CNN denoiser ``D(x) = x − n̂(x)``.

    Args:
        channels: image channels C.
        width: feature maps of the hidden convolutions.
        depth: number of convolutions (≥ 2); DnCNN uses 17, small images need fewer.
        batch_norm: BatchNorm after the hidden convolutions (as in DnCNN).
    """

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 5, *, batch_norm: bool = True):
        super().__init__()
        if channels < 1 or width < 1:
            raise ValueError(f"channels and width must be positive, got {channels}, {width}")
        if depth < 2:
            raise ValueError(f"depth must be at least 2 (input and output convolutions), got {depth}")
        self.channels, self.width, self.depth = int(channels), int(width), int(depth)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"DnCNN expects (B, {self.channels}, H, W) images, got {tuple(x.shape)}")
        return x - self.body(x)


class Encoder(nn.Module):
    """``(C, H, W) → R^{d_z}``: conv-ReLU, stride-2 conv-ReLU, linear."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, width: int = 32):
        super().__init__()
        c, h, w = _image_shape(image_shape)
        if h % 2 or w % 2:
            raise ValueError(f"image height and width must be even for the autoencoder, got {h}x{w}")
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.fc = nn.Linear(width * (h // 2) * (w // 2), latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class Decoder(nn.Module):
    """``R^{d_z} → (C, H, W)``: linear-ReLU, stride-2 transposed conv-ReLU, conv."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, width: int = 32):
        super().__init__()
        c, h, w = _image_shape(image_shape)
        self.grid = (width, h // 2, w // 2)
        self.fc = nn.Linear(latent_dim, width * (h // 2) * (w // 2))
        self.body = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, c, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(z.shape[0], *self.grid))


class ConvAutoencoder(nn.Module):
    """Autoencoder with a configurable latent size: ``forward(x) = Dec(Enc(x))``.

    Args:
        image_shape: (C, H, W) with even H and W.
        latent_dim: d_z, the size of the code ZO-AE-DS estimates gradients in.
        width: feature maps of the convolutions.
    """

    def __init__(self, image_shape: Sequence[int] = (1, 8, 8), latent_dim: int = 16, width: int = 32):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.image_shape = _image_shape(image_shape)
        self.latent_dim = int(latent_dim)
        self.encoder = Encoder(self.image_shape, self.latent_dim, width)
        self.decoder = Decoder(self.image_shape, self.latent_dim, width)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"the autoencoder expects (B, {', '.join(map(str, self.image_shape))}) images, "
                             f"got {tuple(x.shape)}")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"the decoder expects (B, {self.latent_dim}) codes, got {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
