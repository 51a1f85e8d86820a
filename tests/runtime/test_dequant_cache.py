"""dequant_cache: kept expansions of packed (GGUF) blocks give the same forward, bit for bit, as
expanding per forward; swapped blocks are never kept; LoRAs applied and removed over a cached model
still apply (equal to the uncached model under the same LoRA, and different from no LoRA); a move
of the model drops what was kept and the next forward expands it again; the cost per block is the
weights' size in the compute dtype (counted here from the config's widths); "auto" keeps what fits
into free CUDA memory less its reserve (torch.cuda queries monkeypatched), nothing on the CPU."""

import pytest
import torch
from safetensors.torch import save_file

from dit_fixtures import make_inputs, random_weights, tiny_config
from lora_fixtures import random_pairs, write_pairs
from wan.errors import WanInputError
from wan.job.load import load_dit
from wan.job.options import LoadOptions
from wan.runtime import dequant_cache as dc
from wan.runtime.blockswap import enable_block_swap
from wan.weights.lora import apply_loras, load_lora
from wan.weights.packed import PackedLinear
from wan.weights.quantize import write_gguf

CFG = tiny_config("t2v_1_3b")  # dim 256, ffn 512, 2 blocks


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dq") / "tiny_q4_k.gguf"
    write_gguf(random_weights(CFG), path, "Q4_K")
    return path


def _load(path, mode="off"):
    return load_dit(path, LoadOptions(dtype=torch.float32, device="cpu", attention="sdpa", dequant_cache=mode))


def _forward(model, inp):
    with torch.no_grad():
        return model(inp.x, inp.t, inp.context)


def _kept(model) -> list[bool]:
    return [all(m.dequantized is not None for m in b.modules() if isinstance(m, PackedLinear))
            for b in model.blocks]


INP = make_inputs(CFG, frames=2, height=4, width=4)
# per block: q, k, v, o of self- and cross-attention (dim x dim) and the FFN's two (dim x ffn)
BLOCK_ELEMENTS = 8 * CFG.dim * CFG.dim + 2 * CFG.dim * CFG.ffn_dim


def test_kept_expansions_equal_per_forward_expansion(gguf_file):
    plain, cached = _load(gguf_file), _load(gguf_file, "on")
    assert _kept(plain) == [False, False] and _kept(cached) == [True, True]
    assert torch.equal(_forward(cached, INP), _forward(plain, INP))
    assert dc.block_cache_bytes(cached, torch.float32) == [4 * BLOCK_ELEMENTS] * CFG.num_layers
    assert dc.block_cache_bytes(cached, torch.bfloat16) == [2 * BLOCK_ELEMENTS] * CFG.num_layers


def test_a_cached_step_expands_nothing(gguf_file, monkeypatch):
    model = _load(gguf_file, "on")
    expected = _forward(model, INP)

    def refuse(*args, **kwargs):
        raise AssertionError("a kept layer expanded its weight")

    monkeypatch.setattr(PackedLinear, "dequantized_weight", refuse)
    assert torch.equal(_forward(model, INP), expected)


def test_swapped_blocks_are_not_kept(gguf_file):
    expected = _forward(_load(gguf_file), INP)
    model = _load(gguf_file)
    enable_block_swap(model, 1, "cpu", "cpu", simulate=True)
    assert dc.enable_dequant_cache(model, "on", torch.float32) == [0]
    assert _kept(model) == [True, False]
    assert torch.equal(_forward(model, INP), expected)


def test_loras_over_a_cached_model(gguf_file, tmp_path):
    plain, cached = _load(gguf_file), _load(gguf_file, "on")
    base = {k: v for k, v in random_weights(CFG).items()}
    modules = [k[: -len(".weight")] for k, v in base.items() if k.startswith("blocks.") and v.dim() == 2]
    for i, seed in enumerate((3, 4)):
        save_file(write_pairs(random_pairs(base, modules, seed=seed), lambda m: f"diffusion_model.{m}",
                              "lora_B.weight", "lora_A.weight"), str(tmp_path / f"l{i}.safetensors"))
    without = _forward(cached, INP)
    for i in (0, 1, 0):  # apply, remove, apply another, and the first again
        lora = load_lora(tmp_path / f"l{i}.safetensors", 0.7)
        with apply_loras(cached, lora), apply_loras(plain, lora):
            got, expected = _forward(cached, INP), _forward(plain, INP)
        assert torch.equal(got, expected)
        assert not torch.equal(got, without)
    assert torch.equal(_forward(cached, INP), without)


def test_a_move_drops_and_the_next_forward_expands_again(gguf_file):
    model = _load(gguf_file, "on")
    expected = _forward(model, INP)
    model.to("cpu")
    assert _kept(model) == [False, False]
    assert torch.equal(_forward(model, INP), expected)
    assert _kept(model) == [True, True]
    dc.drop_dequant_cache(model)
    assert torch.equal(_forward(model, INP), expected)
    assert _kept(model) == [False, False]  # dropped for good: no hook expands it again


def test_plan():
    costs, resident = [3, 3, 0, 3], [0, 1, 2, 3]
    assert dc.plan_dequant_cache(costs, resident, "on") == [0, 1, 3]
    assert dc.plan_dequant_cache(costs, [0, 2], "on") == [0]
    assert dc.plan_dequant_cache(costs, resident, "auto", budget=7) == [0, 1]
    assert dc.plan_dequant_cache(costs, resident, "auto", budget=2) == []
    assert dc.plan_dequant_cache(costs, resident, "auto", budget=None) == []
    assert dc.plan_dequant_cache(costs, resident, "off", budget=100) == []


def test_auto_budget(monkeypatch, gguf_file):
    assert dc.auto_budget("cpu") is None
    model = _load(gguf_file, "auto")  # on the CPU: nothing kept
    assert _kept(model) == [False, False]
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 16 * gib))
    assert dc.auto_budget("cuda:0") == 6 * gib  # 10 GiB free less a quarter of 16 GiB


def test_unknown_mode_is_refused():
    with pytest.raises(WanInputError, match="dequant_cache 'always' is not one of off, on, auto"):
        LoadOptions(dequant_cache="always")
