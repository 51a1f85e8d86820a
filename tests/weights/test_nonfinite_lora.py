"""LoRAs that would make NaN/Inf weights are refused naming the file and the tensor: tensors all NaN
or +Inf, an alpha of 1e30, a strength of NaN/Inf (API, chain, RunOptions)."""

import pytest
import torch
from nonfinite_files import poison_safetensors
from safetensors.torch import load_file, save_file
from tiny_models import write_lora

from wan.errors import WanFileError, WanInputError
from wan.job.options import RunOptions
from wan.weights.lora import chain_add, load_lora

NAME = "diffusion_model.blocks.0.self_attn.q.lora_B.weight"


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), r"\+Inf")])
def test_lora_tensor_all_non_finite(tmp_path, value, word):
    path = write_lora(tmp_path / "bad.safetensors")
    sd = load_file(str(path))
    sd[NAME] = torch.full_like(sd[NAME], value)
    save_file(sd, str(path))
    with pytest.raises(WanFileError, match=rf"bad.safetensors: tensor '{NAME}' contains {word}"):
        load_lora(path)


def test_lora_one_nan_value(tmp_path):
    path = poison_safetensors(write_lora(tmp_path / "one.safetensors"), NAME)
    with pytest.raises(WanFileError, match=rf"one.safetensors: tensor '{NAME}'"):
        load_lora(path)


def test_alpha_that_overflows(tmp_path):
    path = write_lora(tmp_path / "alpha.safetensors")
    sd = load_file(str(path))
    sd["diffusion_model.blocks.0.self_attn.q.alpha"] = torch.tensor(1e30)
    save_file(sd, str(path))
    with pytest.raises(WanFileError, match=r"alpha.safetensors: LoRA pair '.*blocks.0.self_attn.q.*alpha 1e\+30"):
        load_lora(path)


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -float("inf")])
def test_strength_not_finite(tmp_path, strength):
    path = write_lora(tmp_path / "s.safetensors")
    lora = load_lora(path)
    with pytest.raises(WanInputError, match=r"strength of LoRA s.safetensors is (nan|inf|-inf)"):
        chain_add((), lora, strength)
    with pytest.raises(WanInputError, match=r"s.safetensors"):
        load_lora(path, strength)
    with pytest.raises(WanInputError, match=r"s.safetensors"):
        RunOptions(loras=((lora, strength),))
    with pytest.raises(WanInputError, match=r"s.safetensors"):
        RunOptions(loras_low=((lora, strength),))


def test_strength_that_overflows(tmp_path):
    lora = load_lora(write_lora(tmp_path / "big.safetensors"))
    assert chain_add((), lora, 10.0)[0][1] == 10.0  # the node's widget range applies
    with pytest.raises(WanInputError, match=r"strength 1e\+20 of LoRA big.safetensors"):
        chain_add((), lora, 1e20)
