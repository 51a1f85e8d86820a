"""Wan Speed Options through the nodes: the dequantization cache reaches the loaded model (its
resident packed blocks keep their expanded weights) and the SDPA edge steps reach the sampler's run;
the latent equals the plain model's bit for bit (the cache holds exactly what each step would
expand; with SDPA attention the edge steps change no kernel)."""

from __future__ import annotations

import functools

import pytest
import torch

from refs import comfy, import_pack, pack_module
from tiny_models import NAMES, write_set

PACK = "wan_pack_speed_nodes_test"
ROLE = "t2v_gguf"
W, H, FRAMES, STEPS = 32, 32, 5, 3


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("comfy_models")
    write_set(d, only=(ROLE,))
    return d


@pytest.fixture
def pack(models_dir, monkeypatch):
    torch.set_num_threads(2)
    folder_paths = comfy("folder_paths")
    import_pack(PACK)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "diffusion_models",
                        ([str(models_dir / NAMES[ROLE][0])], {".safetensors", ".gguf"}))
    mod = functools.partial(pack_module, name=PACK)
    monkeypatch.setattr(mod("nodes.loaders"), "MODEL_CACHE", mod("nodes._common").ModelCache())
    return mod


def _latent(pack, model) -> torch.Tensor:
    conditioning = pack("wan.job.conditioning")
    g = torch.Generator().manual_seed(9)
    text = conditioning.PromptEmbeds(torch.randn(1, 512, 4096, generator=g), torch.randn(1, 512, 4096, generator=g))
    embeds = conditioning.t2v_conditioning(W, H, FRAMES, 16)
    return pack("nodes.sampler").WanSampler().sample(model, text, embeds, STEPS, 5.0, 5.0, 3, "unipc", 1.0)[0]["samples"]


def test_speed_options_reach_model_and_run_and_change_no_value(pack, monkeypatch):
    loader = pack("nodes.loaders").WanModelLoader()
    (plain,) = loader.load(NAMES[ROLE][1], "fp32", "disabled", "main_device", "sdpa")
    (speed,) = pack("nodes.perf_options").WanSpeedArgs().make("on", 1)
    (fast,) = loader.load(NAMES[ROLE][1], "fp32", "disabled", "main_device", "sdpa", speed_args=speed)
    assert fast.options.dequant_cache == "on" and fast.sdpa_edge_steps == 1
    runs = []
    sample = pack("wan.job.sample")
    real = sample.sample_video

    def spy(*args, **kwargs):
        runs.append(args[4] if len(args) > 4 else kwargs["run"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sample, "sample_video", spy)
    expected = _latent(pack, plain)
    got = _latent(pack, fast)
    assert torch.equal(got, expected)
    assert [r.sdpa_edge_steps for r in runs] == [0, 1]
    with pytest.raises(Exception, match="dequant_cache 'sometimes'"):
        pack("nodes.perf_options").WanSpeedArgs().make("sometimes", 0)
