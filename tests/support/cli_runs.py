"""``python -m wan generate`` in process (no tests here): tiny model files in real safetensors format
(the ``files`` fixture) with the arguments that run them (``_args``), and a run that catches the
latent on its way to the VAE decode, so CLI tests compare latents with the node's or the library's."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from text_fixtures import spiece_bytes  # noqa: F401 (fixture)
from text_fixtures import tiny_hf
from vae_fixtures import TINY21, random_weights

from dit_fixtures import random_weights as dit_weights
from wan.cli import generate as cli_generate
from wan.cli import main
from wan.job import pipelines
from wan.models.dit.config import DIT_PRESETS
from wan.models.vae.wan21 import WanVAE


def generate_latent(argv: list[str], monkeypatch) -> torch.Tensor:
    """Runs ``generate`` with ``argv`` (after the command name); returns the one latent it decoded."""
    seen = []
    decode = pipelines.decode_frames
    monkeypatch.setattr(pipelines, "decode_frames",
                        lambda vae, latent, tile=None: seen.append(latent) or decode(vae, latent, tile))
    to_file = cli_generate.decode_to_file  # videos decode straight into the file
    monkeypatch.setattr(cli_generate, "decode_to_file",
                        lambda vae, latent, *a, **k: seen.append(latent) or to_file(vae, latent, *a, **k))
    assert main(["generate", *argv]) == 0
    assert len(seen) == 1
    return seen[0]


def job_args(d, dit_file: str, prompt: str, size: tuple[int, int], frames: int, *extra, vae: str = "vae.safetensors"):
    """generate's arguments for one tiny job on the files in ``d``: 2 steps, cfg 3, seed 7, fp32 on the CPU."""
    w, h = size
    return ["--dit", str(d / dit_file), "--text-encoder", str(d / "te.safetensors"), "--vae", str(d / vae),
            "--prompt", prompt, "--width", str(w), "--height", str(h), "--frames", str(frames), "--steps", "2",
            "--cfg", "3", "--seed", "7", "--dtype", "fp32", "--device", "cpu", "--out", str(d / "out.mp4"), "--quiet",
            *extra]


def api_latent(pipe, monkeypatch, prompt: str, size: tuple[int, int], frames: int, cfg: float = 3.0, **inputs):
    """The job of ``job_args`` through the library pipeline ``pipe``; returns the latent it decoded."""
    seen = []
    decode = pipelines.decode_frames
    monkeypatch.setattr(pipelines, "decode_frames",
                        lambda vae, latent, tile=None: seen.append(latent) or decode(vae, latent, tile))
    pipe(prompt, width=size[0], height=size[1], num_frames=frames, steps=2, cfg=cfg, seed=7, **inputs)
    return seen[0]


W, H, FRAMES = 32, 32, 5


@pytest.fixture(scope="module")
def files(tmp_path_factory, spiece_bytes):  # noqa: F811
    torch.set_num_threads(2)
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(4)
    te = {k: v.clone() for k, v in tiny_hf(vocab_size=400).state_dict().items() if k != "encoder.embed_tokens.weight"}
    te["spiece_model"] = torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8)
    save_file(te, str(d / "te.safetensors"))
    save_file(random_weights(WanVAE(TINY21).state_dict(), seed=3), str(d / "vae.safetensors"))
    for variant in ("t2v_1_3b", "i2v_14b"):
        cfg = DIT_PRESETS[variant].tiny(dim=128, ffn_dim=256, num_layers=1, text_dim=64)
        save_file(dit_weights(cfg, seed=5), str(d / f"{variant}.safetensors"))
    return d


def _args(d, out, *extra, dit="t2v_1_3b"):
    return ["generate", "--dit", str(d / f"{dit}.safetensors"), "--text-encoder", str(d / "te.safetensors"),
            "--vae", str(d / "vae.safetensors"), "--prompt", "a red fox", "--width", str(W), "--height", str(H),
            "--steps", "2", "--cfg", "3", "--seed", "7", "--dtype", "fp32", "--device", "cpu", "--out", str(out),
            *extra]
