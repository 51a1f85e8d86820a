"""fp16 accumulation: the global PyTorch flag is on exactly while a block of the model that asked
for it computes (VACE blocks included), put back after, also when the block raises; other models
and the code around the blocks keep the process's setting; the option reaches the model from
LoadOptions, and a model not computing in fp16 is told the flag does nothing."""

import pytest
import torch

from dit_fixtures import make_inputs, random_weights, tiny_config
from wan.job.load import build_dit
from wan.job.options import LoadOptions
from wan.models.dit.model import WanDiT
from wan.notices import collected
from wan.runtime import fp16_accumulation as acc

MATMUL = torch.backends.cuda.matmul


@pytest.fixture
def flag_off():
    if not acc.supported():
        pytest.skip("this PyTorch has no allow_fp16_accumulation")
    saved = MATMUL.allow_fp16_accumulation
    MATMUL.allow_fp16_accumulation = False
    yield
    MATMUL.allow_fp16_accumulation = saved


def _seen(dit):
    # what the flag reads inside every block and every Linear outside the blocks
    seen = {"in": [], "out": []}
    blocks = {id(b) for b in [*dit.blocks, *getattr(dit, "vace_blocks", ())]}
    for name, m in dit.named_modules():
        if isinstance(m, torch.nn.Linear):
            inside = name.startswith(("blocks.", "vace_blocks."))
            m.register_forward_hook(lambda *_, k=("in" if inside else "out"): seen[k].append(
                MATMUL.allow_fp16_accumulation))
    assert blocks
    return seen


def test_on_only_inside_the_blocks(flag_off):
    cfg = tiny_config("vace_1_3b")
    opts = LoadOptions(dtype=torch.float32, device="cpu", attention="sdpa", fp16_accumulation=True)
    with collected() as notices:
        dit = build_dit(random_weights(cfg), opts)
    assert notices == ["fp16_accumulation only changes fp16 compute; this model computes in torch.float32 "
                       "(choose base_precision fp16 for it to act)"]
    other = build_dit(random_weights(cfg), LoadOptions(dtype=torch.float32, device="cpu", attention="sdpa"))
    seen, seen_other = _seen(dit), _seen(other)
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    with torch.no_grad():
        dit(inp.x, inp.t, inp.context, vace_context=inp.vace_context)
        other(inp.x, inp.t, inp.context, vace_context=inp.vace_context)
    assert seen["in"] and all(seen["in"])
    assert seen["out"] and not any(seen["out"])
    assert not any(seen_other["in"] + seen_other["out"])
    assert MATMUL.allow_fp16_accumulation is False


def test_put_back_when_a_block_raises(flag_off):
    cfg = tiny_config("t2v_1_3b")
    dit = WanDiT(cfg)
    dit.load_state_dict(random_weights(cfg))
    acc.enable_fp16_accumulation(dit, torch.float16)

    def boom(*_):
        assert MATMUL.allow_fp16_accumulation is True
        raise RuntimeError("boom")

    dit.blocks[1].ffn.register_forward_hook(boom)
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad():
        dit(inp.x, inp.t, inp.context)
    assert MATMUL.allow_fp16_accumulation is False
    MATMUL.allow_fp16_accumulation = True  # a process that had it on keeps it on
    with torch.no_grad():
        dit.blocks[1].ffn._forward_hooks.clear()
        dit(inp.x, inp.t, inp.context)
    assert MATMUL.allow_fp16_accumulation is True
