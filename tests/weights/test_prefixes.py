"""A Wan DiT saved under each wrapper in circulation (none, ComfyUI's ``model.diffusion_model.`` and
``diffusion_model.``, diffusers pipelines' ``transformer.``) loads as the same network; with tensors
gone the error names them; and ``identify`` names each such file's variant.

The tiny network's output is checked against ComfyUI's own WanModel holding the same weights; the
full-size names and shapes for ``identify`` come from ComfyUI's and diffusers' networks on the meta
device, written as sparse files that are read for their header only.
"""

import pytest
import torch
from safetensors.torch import save_file

from dit_fixtures import check, comfy_model, diffusers_dit, diffusers_model, make_inputs, random_weights
from dit_headers import comfy_dit_shapes, write_sparse_safetensors
from wan.errors import WanFileError
from wan.models.identify import identify_file
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.loading import load_dit
from wan.weights.loader import load_state_dict

torch.set_num_threads(2)

PREFIXES = ["", "model.diffusion_model.", "diffusion_model.", "transformer."]


@pytest.fixture(scope="module")
def tiny():
    """An i2v network of three blocks, its weights, inputs, and its output from ComfyUI's network."""
    cfg = DIT_PRESETS["i2v_14b"].tiny(num_layers=3)
    sd = random_weights(cfg)
    inp = make_inputs(cfg)
    with torch.no_grad():
        ref = comfy_model(cfg, sd)(torch.cat([inp.x, inp.y], 1), inp.t, inp.context_padded, clip_fea=inp.clip_fea)
    return cfg, sd, inp, ref


def run(model, inp):
    with torch.no_grad():
        return model(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y)


def load_file(path):
    return load_dit(load_state_dict(path), path=path, dtype=torch.float32)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_each_wrapper_loads_the_same_network(tiny, prefix, tmp_path):
    cfg, sd, inp, ref = tiny
    save_file({prefix + k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "dit.safetensors"))
    check(run(load_file(tmp_path / "dit.safetensors"), inp), ref)


def test_diffusers_names_under_transformer(tiny, tmp_path):
    """What a diffusers pipeline's state dict holds: diffusers' own names under ``transformer.``."""
    cfg, sd, inp, ref = tiny
    theirs = diffusers_model(cfg, sd).state_dict()
    save_file({"transformer." + k: v.contiguous() for k, v in theirs.items()}, str(tmp_path / "dit.safetensors"))
    check(run(load_file(tmp_path / "dit.safetensors"), inp), ref)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_missing_tensors_are_named(tiny, prefix, tmp_path):
    cfg, sd, inp, ref = tiny
    gone = [k for k in sd if k.startswith("blocks.1.")]
    partial = {prefix + k: v.contiguous() for k, v in sd.items() if k not in gone}
    save_file(partial, str(tmp_path / "part.safetensors"))
    with pytest.raises(WanFileError) as err:
        load_file(tmp_path / "part.safetensors")
    msg = str(err.value)
    # a prefix mix-up would report the whole network (or its required tensors) missing instead
    assert msg.startswith("part.safetensors: ") and "missing" in msg and "blocks.1." in msg, msg
    assert f"{len(gone)} of {len(sd)}" in msg and "truncated" not in msg.lower(), msg

    one = "blocks.2.cross_attn.k_img.weight"
    save_file({prefix + k: v.contiguous() for k, v in sd.items() if k != one}, str(tmp_path / "one.safetensors"))
    with pytest.raises(WanFileError, match=rf"one.safetensors: .*missing.*{one}"):
        load_file(tmp_path / "one.safetensors")


@pytest.mark.parametrize("variant", ["t2v_1_3b", "i2v_14b", "ti2v_5b", "vace_14b"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_identify_names_the_variant_under_each_wrapper(variant, prefix, tmp_path):
    shapes = {prefix + k: s for k, s in comfy_dit_shapes(DIT_PRESETS[variant]).items()}
    who = identify_file(str(write_sparse_safetensors(tmp_path / "dit.safetensors", shapes)))
    assert (who.role, who.variant) == ("dit", variant), who


@pytest.mark.parametrize("variant", ["t2v_1_3b", "i2v_14b"])
def test_identify_names_a_diffusers_pipeline_transformer(variant, tmp_path):
    with torch.device("meta"):
        model = diffusers_dit(DIT_PRESETS[variant])
    shapes = {"transformer." + k: tuple(v.shape) for k, v in model.state_dict().items()}
    who = identify_file(str(write_sparse_safetensors(tmp_path / "dit.safetensors", shapes)))
    assert (who.role, who.variant) == ("dit", variant), who
