"""``python -m wan generate`` runs ComfyUI's samplers and takes the noise stream: a one-frame .png with
``--sampler dpm++_sde`` equals the Python API's frame for the same seed and stream (to 8-bit rounding),
and the stream changes the picture."""

import numpy as np
import torch
from PIL import Image

from cli_runs import H, W, _args, files, spiece_bytes  # noqa: F401 (fixtures)
from wan.cli import main
from wan.job.pipelines import T2VPipeline


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255


def test_sde_sampler_and_noise_stream_from_the_cli(files, tmp_path):  # noqa: F811
    comfy_png, diffusers_png = tmp_path / "comfy.png", tmp_path / "diffusers.png"
    assert main(_args(files, comfy_png, "--quiet", "--sampler", "dpm++_sde")) == 0
    assert main(_args(files, diffusers_png, "--quiet", "--sampler", "dpm++_sde", "--noise", "diffusers")) == 0
    pipe = T2VPipeline.from_files(dit=files / "t2v_1_3b.safetensors", text_encoder=files / "te.safetensors",
                                  vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    api = pipe("a red fox", width=W, height=H, num_frames=1, steps=2, cfg=3.0, seed=7, sampler="dpm++_sde",
               noise="comfy")[0].numpy()
    assert np.abs(_png(comfy_png) - api).max() <= 1 / 255 + 1e-6
    assert np.abs(_png(diffusers_png) - api).max() > 0.02
