"""Causal language models from ``transformers``, built from a config (random initialisation, nothing downloaded).

:class:`CausalLM` wraps a ``transformers`` causal LM so that ``model(ids)``
returns the logits tensor ``(B, T, V)`` the edgezo losses take, and
:func:`edgezo.losses.next_token` is the language-modelling loss on them.

Dropout is off (probabilities 0): a zeroth-order difference ``ℓ(θ + μz) −
ℓ(θ − μz)`` needs the same function at both points (as in MeZO, Malladi et al.
2023). Needs the optional ``llm`` extra (``pip install edgezo[llm]``).
"""

from __future__ import annotations

import torch
from torch import nn

from edgezo.errors import ConfigError

GPT2_SIZES = {  # (n_layer, n_embd, n_head): GPT-2 small / medium / large widths
    "tiny": (2, 32, 2),
    "small": (12, 768, 12),
    "medium": (24, 1024, 16),
    "large": (36, 1280, 20),
}


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("causal language models need the transformers package: pip install 'edgezo[llm]'") from None
    return transformers


class CausalLM(nn.Module):
    """A ``transformers`` causal LM whose forward maps token ids (B, T) to logits (B, T, V)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids, use_cache=False).logits


def gpt2(size: str = "tiny", *, vocab_size: int = 256, context: int = 128, n_layer: int | None = None,
         n_embd: int | None = None, n_head: int | None = None) -> CausalLM:
    """A GPT-2-architecture LM from ``GPT2Config`` (random init, dropout 0); ``size`` names a width in GPT2_SIZES."""
    if size not in GPT2_SIZES:
        raise ConfigError(f"unknown GPT-2 size {size!r}; use one of {', '.join(GPT2_SIZES)} "
                          "or set n_layer/n_embd/n_head")
    layers, width, heads = GPT2_SIZES[size]
    config = _transformers().GPT2Config(
        vocab_size=vocab_size, n_positions=context, n_layer=n_layer or layers, n_embd=n_embd or width,
        n_head=n_head or heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return CausalLM(_transformers().GPT2LMHeadModel(config)).eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
