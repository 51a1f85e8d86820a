"""The seeded random weights the parity tests run on (no tests here): one generator for our DiT and
VAE and for the reference models a test fills with the same numbers.

Values depend only on the names and shapes given, their order and the seed; the scales keep
activations O(1) through a network of any depth, so that differences in the outputs measure the
code, not an overflow. (wan.install.tiny.seeded writes the tiny *files* with its own, milder scales.)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def seeded_weights(template: Mapping[str, torch.Tensor | torch.Size | tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """fp32 tensors with ``template``'s names and shapes (tensors or shapes), drawn in its order
    from one generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, value in template.items():
        shape = torch.Size(value.shape if isinstance(value, torch.Tensor) else value)
        out[name] = _scaled(name, shape, torch.randn(shape, generator=g))
    return out


def _scaled(name: str, shape: torch.Size, r: torch.Tensor) -> torch.Tensor:
    if name.endswith(("modulation", "emb_pos")):
        return 0.3 * r  # the DiT's AdaLN tables and positional embeddings
    if name.endswith("gamma"):
        return 1.0 + 0.1 * r  # the VAE's RMS-norm gains
    if "norm" in name and name.endswith("weight") or name.startswith("img_emb.proj.0.w") or ".proj.4.w" in name:
        return 1.0 + 0.2 * r  # the DiT's RMS/LayerNorm gains (img_emb.proj.0/4 are LayerNorms)
    if name.endswith("bias") or len(shape) < 2:
        return 0.1 * r
    return r / shape[1:].numel() ** 0.5  # fan-in scaling of matrices and convolution kernels
