"""Wan Speed Options through the nodes: the dequantization cache reaches the loaded model (its
resident packed blocks keep their expanded weights) and the SDPA edge steps reach the sampler's run;
the latent equals the plain model's bit for bit (the cache holds exactly what each step would
expand; with SDPA attention the edge steps change no kernel)."""

from __future__ import annotations

import pytest
import torch

from tiny_models import NAMES
from tiny_pack import open_pack, t2v_latent, write_models

PACK = "wan_pack_speed_nodes_test"
ROLE = "t2v_gguf"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return write_models(tmp_path_factory, ROLE)


@pytest.fixture
def pack(models_dir, monkeypatch):
    return open_pack(PACK, models_dir, ROLE, monkeypatch)


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
    expected = t2v_latent(pack, plain)
    got = t2v_latent(pack, fast)
    assert torch.equal(got, expected)
    assert [r.sdpa_edge_steps for r in runs] == [0, 1]
    with pytest.raises(Exception, match="dequant_cache 'sometimes'"):
        pack("nodes.perf_options").WanSpeedArgs().make("sometimes", 0)
