"""``python -m wan generate --scheduler NAME`` and ``--timesteps T1,T2,...`` reach the library: the
CLI's sampled latent equals the Python API's with the same schedule, differs from the default grid's,
and lightx2v's 1000,750,500,250 at shift 5 equals ComfyUI's simple scheduler at 4 steps."""

from __future__ import annotations

import pytest
import torch

from cli_runs import generate_latent
from tiny_models import write_dit, write_umt5, write_vae
from wan.cli import main
from wan.job import pipelines
from wan.job.options import LoadOptions

W, H, STEPS, CFG, SEED, SHIFT = 32, 32, 4, 3.0, 7, 5.0
PROMPT, NEGATIVE = "a red fox in the snow", "blurry"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(2)
    d = tmp_path_factory.mktemp("models")
    write_dit(d / "dit.safetensors", "t2v_1_3b", "safetensors", seed=3)
    write_umt5(d / "umt5.safetensors")
    write_vae(d / "vae.safetensors", "2.1")
    return d


def cli_latent(models, out, monkeypatch, *extra) -> torch.Tensor:
    """The CLI's sampled latent (seen on its way to the VAE)."""
    argv = ["--dit", str(models / "dit.safetensors"), "--text-encoder", str(models / "umt5.safetensors"),
            "--vae", str(models / "vae.safetensors"), "--prompt", PROMPT, "--negative-prompt", NEGATIVE,
            "--width", str(W), "--height", str(H), "--frames", "1", "--cfg", str(CFG), "--shift", str(SHIFT),
            "--seed", str(SEED), "--sampler", "euler", "--dtype", "fp32", "--device", "cpu", "--quiet",
            "--out", str(out), *extra]
    return generate_latent(argv, monkeypatch)


def test_cli_scheduler_and_timesteps_reach_the_library(models, tmp_path, monkeypatch):
    simple = cli_latent(models, tmp_path / "a.png", monkeypatch, "--steps", str(STEPS), "--scheduler", "simple")
    pipe = pipelines.T2VPipeline.from_files(dit=str(models / "dit.safetensors"),
                                            text_encoder=str(models / "umt5.safetensors"),
                                            vae=str(models / "vae.safetensors"),
                                            options=LoadOptions(dtype=torch.float32, device="cpu"))
    api = pipe(PROMPT, NEGATIVE, width=W, height=H, num_frames=1, steps=STEPS, cfg=CFG, shift=SHIFT, seed=SEED,
               sampler="euler", scheduler="simple", output_type="latent")
    assert torch.equal(simple, api)
    default = cli_latent(models, tmp_path / "b.png", monkeypatch, "--steps", str(STEPS))
    assert not torch.equal(simple, default)  # diffusers' euler grid differs from ComfyUI's simple
    # --timesteps replaces --steps and --scheduler; lightx2v's four steps are ComfyUI's simple at 4
    listed = cli_latent(models, tmp_path / "c.png", monkeypatch, "--steps", "30", "--scheduler", "beta",
                        "--timesteps", "1000,750,500,250")
    assert torch.equal(listed, simple)


def test_cli_refuses_bad_schedules(models, tmp_path, capsys):
    base = ["generate", "--dit", str(models / "dit.safetensors"), "--text-encoder", str(models / "umt5.safetensors"),
            "--vae", str(models / "vae.safetensors"), "--prompt", "x", "--out", str(tmp_path / "x.png")]
    with pytest.raises(SystemExit):
        main(base + ["--scheduler", "karas"])
    assert "invalid choice: 'karas'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--timesteps", "1000,abc"])
    assert "1000,750,500,250" in capsys.readouterr().err
    assert main(base + ["--timesteps", "500,750", "--frames", "1", "--width", "32", "--height", "32",
                        "--device", "cpu", "--quiet"]) == 1
    assert "timesteps must strictly decrease" in capsys.readouterr().err
