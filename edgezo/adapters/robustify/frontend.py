"""The defender's front end: denoiser, optionally followed by encoder and decoder.

    FO-DS / ZO-DS:  x ─► D_θ ─► f                      (code = D_θ(x), pixel space)
    ZO-AE-DS:       x ─► D_θ ─► Enc ─► Dec ─► f         (code = Enc(D_θ(x)), latent space)

``code`` is where zeroth-order estimation happens; ``forward`` is what is sent
to the black box. Everything here belongs to the defender, so backpropagation
through it is allowed.
"""

from __future__ import annotations

import torch
from torch import nn

from ...models.denoiser import ConvAutoencoder, DnCNN


class Frontend(nn.Module):
    def __init__(self, denoiser: DnCNN | None, autoencoder: ConvAutoencoder | None = None):
        super().__init__()
        self.denoiser = denoiser
        self.autoencoder = autoencoder

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        return self.denoiser(x) if self.denoiser is not None else x

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """``Enc(D(x))`` with an autoencoder, else ``D(x)`` flattened: shape (B, d)."""
        h = self.denoise(x)
        return self.autoencoder.encode(h) if self.autoencoder is not None else h.flatten(1)

    def decode(self, z: torch.Tensor, image_shape: tuple[int, ...]) -> torch.Tensor:
        return self.autoencoder.decode(z) if self.autoencoder is not None else z.view(-1, *image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.denoise(x)
        return self.autoencoder(h) if self.autoencoder is not None else h


class DenoiserEncoder(nn.Module):
    """``x ↦ Enc(D(x))`` — the part ZO-AE-DS trains (exported as one ONNX graph)."""

    def __init__(self, frontend: Frontend):
        super().__init__()
        self.frontend = frontend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frontend.code(x)


def trainable_modules(frontend: Frontend, method: str) -> list[nn.Module]:
    """Modules updated in the stability stage: the denoiser, plus the encoder for ZO-AE-DS."""
    mods: list[nn.Module] = [frontend.denoiser] if frontend.denoiser is not None else []
    if method == "zo-ae-ds" and frontend.autoencoder is not None:
        mods.append(frontend.autoencoder.encoder)
    return mods
