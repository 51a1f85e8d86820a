"""Sequence (Ulysses, ring) and CFG parallelism over 2 gloo processes equal one process: one DiT
forward of every tiny model kind (T2V, I2V with CLIP, TI2V with per-frame timesteps, VACE, a
GGUF-packed model, a 3-head model that only ring can split) and whole ``sample_video`` runs (cfg 3,
block swap, LoRA + context windows, two Wan2.2 experts), fp32, max|split - ref| <= 1e-5 max|ref|.
On 4 processes, the product layouts (2 CFG x 2 Ulysses, 2 CFG x 2 ring, 2 Ulysses x 2 ring). The reference
is the plain single-process call in the same process. 45 tokens per forward: shards of 23 and 22.
"""

import pytest
import torch
from parallel_workers import product_worker, spawn, worker

from wan.parallel.layout import ParallelLayout

TOL = 1e-5
LAYOUTS = (ParallelLayout(ulysses=2), ParallelLayout(ring=2), ParallelLayout(cfg=2))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("par")
    out = tmp / "results.pt"
    spawn(worker, 2, LAYOUTS, str(tmp), str(out))
    res = torch.load(out, weights_only=True)
    assert "error" not in res, res.get("error")
    return res


FORWARDS = [f"{m}-{lay.spec()}" for m in ("t2v_1_3b", "i2v_14b", "ti2v_5b", "vace_1_3b", "gguf_q8")
            for lay in LAYOUTS] + ["t2v_3heads-ring=2", "t2v_3heads-cfg=2"]
SAMPLES = [f"{r}-{lay.spec()}" for r in ("sampler", "sampler+blockswap", "sampler+lora+windows", "experts")
           for lay in LAYOUTS]


@pytest.mark.parametrize("case", FORWARDS)
def test_forward_equals_one_process(results, case):
    assert results[f"forward:{case}"] <= TOL


@pytest.mark.parametrize("case", SAMPLES)
def test_sample_video_equals_one_process(results, case):
    assert results[f"sample:{case}"] <= TOL


def test_ulysses_not_dividing_heads_is_refused_before_any_forward(results):
    message, forwards = results["refusal:heads"]
    assert "ulysses=2 does not divide the 3 attention heads" in message and "ring=2" in message
    assert forwards == 0


PRODUCTS = (ParallelLayout(cfg=2, ulysses=2), ParallelLayout(cfg=2, ring=2), ParallelLayout(ulysses=2, ring=2))


@pytest.fixture(scope="module")
def product_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("par4")
    out = tmp / "results.pt"
    spawn(product_worker, 4, PRODUCTS, str(tmp), str(out))
    res = torch.load(out, weights_only=True)
    assert "error" not in res, res.get("error")
    return res


@pytest.mark.parametrize("layout", [lay.spec() for lay in PRODUCTS])
def test_product_layouts_on_four_processes_equal_one_process(product_results, layout):
    assert product_results[f"forward:{layout}"] <= TOL
    assert product_results[f"sample:{layout}"] <= TOL
