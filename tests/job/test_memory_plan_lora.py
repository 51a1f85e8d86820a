"""The memory plan counts a job's LoRAs: on a packed (GGUF) DiT their factors are held on the device
by the layers' hooks, in the compute dtype, so at a budget that just holds the job without them the
same job with a LoRA streams more blocks, and its predicted peak grows by the LoRA file's factor
elements (counted from the file) x the compute dtype's bytes."""

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dit_fixtures import random_weights
import wan.job.memory as memory
from wan.job.load import load_dit
from wan.job.options import LoadOptions, RunOptions, SamplingOptions
from wan.job.conditioning import t2v_conditioning
from wan.job.sample import plan_args
from wan.models.dit.config import DIT_PRESETS
from wan.runtime.blockswap import BlockSwapArgs
from wan.weights.lora import load_lora
from wan.weights.quantize import write_gguf

CFG = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=4)
SHAPE = (1, 16, 3, 8, 8)


def _lora_file(path, rank=8):
    g = torch.Generator().manual_seed(3)
    sd = {}
    for i in range(CFG.num_layers):
        for name, (out_f, in_f) in {"self_attn.q": (CFG.dim, CFG.dim), "ffn.0": (CFG.ffn_dim, CFG.dim)}.items():
            key = f"diffusion_model.blocks.{i}.{name}"
            sd[key + ".lora_A.weight"] = torch.randn(rank, in_f, generator=g).to(torch.bfloat16)
            sd[key + ".lora_B.weight"] = (torch.randn(out_f, rank, generator=g) * 0.01).to(torch.bfloat16)
            sd[key + ".alpha"] = torch.tensor(float(rank))
    save_file(sd, str(path))
    return path


def _factor_elements(path) -> int:
    with safe_open(str(path), "pt") as f:
        return sum(f.get_slice(k).get_shape()[0] * f.get_slice(k).get_shape()[1] for k in f.keys() if ".lora_" in k)


def test_a_lora_adds_its_factor_bytes_and_streams_more_blocks(tmp_path, monkeypatch):
    write_gguf(random_weights(CFG), tmp_path / "dit.gguf", "Q8_0")
    model = load_dit(tmp_path / "dit.gguf", LoadOptions(dtype=torch.bfloat16, device="cpu"))
    model._wan_auto_swap = memory.AutoSwap(BlockSwapArgs(), torch.device("cuda"), torch.device("cpu"))
    placed = []
    monkeypatch.setattr(memory, "_place", lambda m, auto, n: placed.append(n))
    lora = load_lora(str(_lora_file(tmp_path / "lora.safetensors")))
    factor_bytes = _factor_elements(tmp_path / "lora.safetensors") * 2  # bf16 compute

    bare = memory.job_plan([model], SHAPE, 2, budget=1 << 40)
    with_lora = memory.job_plan([model], SHAPE, 2, budget=1 << 40, loras=[((lora, 1.0),)])
    assert bare.streamed == with_lora.streamed == 0
    assert with_lora.lora_bytes == factor_bytes
    assert with_lora.predicted_peak_bytes - bare.predicted_peak_bytes == factor_bytes

    edge = bare.predicted_peak_bytes  # holds the job without the LoRA, nothing to spare
    assert memory.job_plan([model], SHAPE, 2, budget=edge).streamed == 0
    plan = memory.plan_job([model], SHAPE, 2, budget=edge, loras=[((lora, 1.0),)])
    assert plan.streamed > 0 and plan.predicted_peak_bytes <= edge
    assert placed == [plan.streamed]
    assert "LoRAs" in str(plan)
    # a strength-0 LoRA is not applied, so it holds nothing
    assert memory.job_plan([model], SHAPE, 2, budget=edge, loras=[((lora, 0.0),)]).streamed == 0

    # sample_video's plan takes the run's LoRAs
    args = plan_args(model, None, True, t2v_conditioning(64, 64, 9), SamplingOptions(steps=2),
                     RunOptions(loras=((lora, 1.0),), memory_budget=edge))
    assert args["loras"] == [((lora, 1.0),)]
    assert memory.job_plan(**args).lora_bytes == factor_bytes
