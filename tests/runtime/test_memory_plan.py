"""The memory plan (wan.runtime.plan) on full-size configurations built on the meta device: for
every budget from 6 to 80 GB, every size from 832x480x33 to 1280x720x121 and the 1.3B, 5B and 14B
networks stored as bf16, fp8 and Q4_K, the plan's predicted peak stays under the budget or the job
is refused with the smallest budget that fits; more budget never streams more blocks."""

import math

import pytest
import torch

from wan.errors import WanInputError
from wan.job.memory import SAMPLING_LATENTS, nbytes
from wan.models.dit.config import DIT_PRESETS
from wan.runtime.plan import GIB, MemoryPlan, peak_bytes, plan_memory
from wan.runtime.plan_sizes import config_sizes, dit_activation_bytes

GB = 10**9
BUDGETS = (6, 8, 12, 16, 24, 48, 80)
SIZES = ((832, 480, 33), (832, 480, 81), (1280, 720, 81), (1280, 720, 121))
MODELS = ("t2v_1_3b", "ti2v_5b", "t2v_14b")
FORMATS = ("bf16", "fp8", "Q4_K")


def _latent(cfg, width, height, frames):
    s = 16 if cfg.vae == "wan2.2" else 8
    return (1, cfg.latent_channels, 1 + (frames - 1) // 4, height // s, width // s)


def _activations(cfg, size, batch=2):
    shape = _latent(cfg, *size)
    return SAMPLING_LATENTS * nbytes(shape) + dit_activation_bytes(cfg, shape, batch, torch.bfloat16)


_SIZES = {}


def _weights(variant, fmt):
    if (variant, fmt) not in _SIZES:
        _SIZES[variant, fmt] = config_sizes(DIT_PRESETS[variant], fmt)
    return _SIZES[variant, fmt]


# published byte sizes of the files (wan/install/catalog.json): the meta-built sizes are the
# tensors' bytes, the files add a header; Q8_0 GGUF files keep some small tensors in F32
@pytest.mark.parametrize("variant,fmt,published,tol", [
    ("t2v_1_3b", "bf16", 2838303560, 0.001),  # wan2.1_t2v_1.3B_fp16
    ("t2v_14b", "fp8", 14293923632, 0.001),  # wan2.2_t2v_*_noise_14B_fp8_scaled (same network)
    ("ti2v_5b", "bf16", 9999658848, 0.001),  # wan2.2_ti2v_5B_fp16
    ("t2v_1_3b", "Q8_0", 1535768800, 0.02),  # Wan2.1-T2V-1.3B-Q8_0.gguf
])
def test_meta_sizes_match_published_files(variant, fmt, published, tol):
    assert math.isclose(_weights(variant, fmt).total, published, rel_tol=tol)


@pytest.mark.parametrize("variant", MODELS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_plan_fits_every_budget_or_names_the_smallest(variant, fmt):
    cfg, weights = DIT_PRESETS[variant], _weights(variant, fmt)
    n = cfg.num_layers
    for size in SIZES:
        act = _activations(cfg, size)
        streamed_before = n + 1
        for budget_gb in BUDGETS:
            budget = budget_gb * GB
            try:
                plan = plan_memory([weights], act, budget, job=f"{size}")
            except WanInputError as e:
                # refused only where streaming every block cannot fit: one block in flight at the
                # least (two with prefetch), all non-block weights and the activations
                least = weights.other + 2 * max(weights.blocks) + act
                assert least > budget
                named = float(str(e).split("needs at least ")[1].split(" GiB")[0])
                assert named == pytest.approx(least / GIB, abs=0.06)
                assert "size or frame count" in str(e) and "quantization" in str(e)
                # the budget it names (rounded up to its last digit) is enough
                assert plan_memory([weights], act, math.ceil((named + 0.05) * GIB)).predicted_peak_bytes <= (
                    (named + 0.05) * GIB)
                assert streamed_before == n + 1, "a smaller budget fitted where a larger one does not"
                continue
            assert plan.resident + plan.streamed == n
            assert plan.predicted_peak_bytes <= budget
            # the peak is what the device holds: resident blocks, non-block weights, blocks in flight
            in_flight = 0 if plan.streamed == 0 else (2 if plan.streamed > 1 else 1) * max(weights.blocks)
            assert plan.predicted_peak_bytes == sum(weights.blocks[:plan.resident]) + weights.other + in_flight + act
            if plan.streamed:  # one block fewer streamed would not fit
                assert peak_bytes([weights], plan.streamed - 1, act) > budget
            assert plan.streamed <= streamed_before  # more budget, never more streamed
            streamed_before = plan.streamed


def test_known_points():
    # 14B fp8 at 832x480x81 with batched CFG on a 24 GB card: 14.3 GB of weights do not all fit
    # beside ~5 GB of activations... and everything fits on 80 GB
    w = _weights("t2v_14b", "fp8")
    act = _activations(DIT_PRESETS["t2v_14b"], (832, 480, 81))
    assert 3 * GB < act < 8 * GB
    assert plan_memory([w], act, 80 * GB).streamed == 0
    plan = plan_memory([w], act, 16 * GB)
    assert 0 < plan.streamed < 40
    # two experts (Wan 2.2 A14B) hold both experts' resident blocks: more streamed than one
    assert plan_memory([w, w], act, 24 * GB).streamed > plan_memory([w], act, 24 * GB).streamed
    # the 1.3B in bf16 at 480p fits whole on 8 GB
    assert plan_memory([_weights("t2v_1_3b", "bf16")], _activations(DIT_PRESETS["t2v_1_3b"], (832, 480, 81)),
                       8 * GB).streamed == 0


def test_activation_peak_grows_with_size_batch_and_dtype():
    cfg = DIT_PRESETS["t2v_14b"]
    small, big = _latent(cfg, 832, 480, 33), _latent(cfg, 1280, 720, 121)
    a = dit_activation_bytes(cfg, small, 1)
    assert dit_activation_bytes(cfg, big, 1) > 5 * a
    assert dit_activation_bytes(cfg, small, 2) > 1.9 * a
    assert dit_activation_bytes(cfg, small, 1, torch.float32) > 1.9 * a
    # the FFN dominates the 14B block: its fc1 and GELU outputs alone, 2 x tokens x 13824 x 2 bytes
    tokens = 9 * 30 * 52
    assert a > 2 * tokens * 13824 * 2


def test_plan_line():
    plan = MemoryPlan(30, 10, int(11.2 * GIB), 12 * GIB, "cpu")
    assert str(plan) == ("Wan memory plan: 30 resident + 10 streamed blocks, text encoder on cpu; "
                         "predicted peak 11.2 GiB of 12.0 GiB")
    from wan.models.vae.base import Tiling
    tiled = MemoryPlan(30, 10, int(11.2 * GIB), 12 * GIB, "cpu", Tiling(256, 64), vae_planned=True)
    assert "text encoder on cpu, VAE tiled 256px; predicted peak 11.2 GiB of 12.0 GiB" in str(tiled)


def test_text_encoder_goes_to_the_cpu_when_it_does_not_fit_beside():
    w = _weights("t2v_1_3b", "bf16")
    act = _activations(DIT_PRESETS["t2v_1_3b"], (832, 480, 33))
    umt5 = 6735906897  # umt5_xxl_fp8_e4m3fn_scaled
    assert plan_memory([w], act, 80 * GB, text_encoder_bytes=umt5).text_encoder_device == "cuda"
    assert plan_memory([w], act, 8 * GB, text_encoder_bytes=umt5).text_encoder_device == "cpu"
