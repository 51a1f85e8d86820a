"""``python -m wan generate`` run in process, with the latent it samples caught on its way to the VAE
decode, so CLI tests compare latents with the node's or the library's (no tests here)."""

from __future__ import annotations

import torch

from wan.cli import main
from wan.job import pipelines


def generate_latent(argv: list[str], monkeypatch) -> torch.Tensor:
    """Runs ``generate`` with ``argv`` (after the command name); returns the one latent it decoded."""
    seen = []
    decode = pipelines.decode_frames
    monkeypatch.setattr(pipelines, "decode_frames",
                        lambda vae, latent, tile=None: seen.append(latent) or decode(vae, latent, tile))
    assert main(["generate", *argv]) == 0
    assert len(seen) == 1
    return seen[0]
