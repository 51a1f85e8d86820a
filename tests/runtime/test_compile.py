"""Per-block torch.compile: same output as the eager model (within 1e-6 relative), and no
recompilation from one step or one prompt of the same size to the next (compiles counted by a
backend that records every graph dynamo hands it; CPU-friendly "eager"/"aot_eager" backends).
Compiling leaves the blocks' ``forward`` alone, and block swap's hooks stay out of the graphs."""

import pytest
import torch

from dit_fixtures import make_inputs, our_model, random_weights
from wan.models.dit.config import DIT_PRESETS
from wan.errors import WanInputError
from wan.runtime.blockswap import enable_block_swap
from wan.runtime.compile import TorchCompileArgs, compile_blocks

CFG = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=3)


def _model(cfg=CFG):
    return our_model(cfg, random_weights(cfg))


def _run(model, inp, t=None, context=None):
    with torch.no_grad():
        return model(inp.x, inp.t if t is None else t, inp.context if context is None else context)


def test_compiled_blocks_match_and_do_not_recompile():
    import torch._dynamo

    torch.set_num_threads(2)
    torch._dynamo.reset()
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    inp = make_inputs(CFG, frames=2, height=4, width=4)
    model = _model()
    plain = _run(model, inp)
    compile_blocks(model, TorchCompileArgs(backend=counting_backend))
    first = _run(model, inp)
    n_first = len(graphs)
    assert n_first >= 1, n_first
    # next step (another timestep) and next prompt (another text embedding of the same length)
    g = torch.Generator().manual_seed(5)
    other_context = torch.randn(inp.context.shape, generator=g)
    step2 = _run(model, inp, t=torch.tensor([401.0]))
    prompt2 = _run(model, inp, context=other_context)
    assert len(graphs) == n_first, f"recompiled: {n_first} graphs after the first call, {len(graphs)} now"

    err = (first - plain).abs().max().item()
    assert err <= 1e-6 * plain.abs().max().item(), err
    eager = _model()
    assert torch.allclose(step2, _run(eager, inp, t=torch.tensor([401.0])), rtol=0, atol=1e-6 * step2.abs().max())
    assert torch.allclose(prompt2, _run(eager, inp, context=other_context), rtol=0,
                          atol=1e-6 * prompt2.abs().max())
    # the instances keep their class's forward (nothing patched onto them)
    assert all("forward" not in vars(b) for b in model.blocks)


def test_compiled_blocks_with_block_swap_and_vace():
    """Block swap's hooks run eagerly around the compiled blocks: one graph per block class (the
    main blocks, the VACE blocks reached through their module call), no recompiles while blocks
    come and go or the timestep changes, and the eager model's output."""
    import torch._dynamo

    torch._dynamo.reset()
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    cfg = DIT_PRESETS["vace_1_3b"].tiny(num_layers=4)
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    model = _model(cfg)
    with torch.no_grad():
        plain = model(inp.x, inp.t, inp.context, vace_context=inp.vace_context)
    swapper = enable_block_swap(model, 2, "cpu", "cpu", simulate=True)
    compile_blocks(model, TorchCompileArgs(backend=counting_backend, fullgraph=True))
    with torch.no_grad():
        outs = [model(inp.x, t, inp.context, vace_context=inp.vace_context)
                for t in (inp.t, torch.tensor([401.0]))]
    assert len(graphs) == 2, len(graphs)
    assert swapper.loads == 2 * 2 and swapper.resident_blocks() == []
    assert (outs[0] - plain).abs().max().item() <= 1e-6 * plain.abs().max().item()


def test_aot_eager_backend_matches():
    import torch._dynamo

    torch._dynamo.reset()
    cfg = CFG.tiny(num_layers=1)
    inp = make_inputs(cfg, frames=1, height=2, width=4)
    model = _model(cfg)
    plain = _run(model, inp)
    out = _run(compile_blocks(model, TorchCompileArgs(backend="aot_eager")), inp)
    assert (out - plain).abs().max().item() <= 1e-6 * plain.abs().max().item()


def test_compile_args_validation():
    with pytest.raises(WanInputError, match="backend"):
        TorchCompileArgs(backend="tensorrt")
    with pytest.raises(WanInputError, match="inductor option"):
        TorchCompileArgs(backend="eager", mode="max-autotune")


def test_fp8_fast_blocks_compile_whole_and_match():
    """The fp8 matmul layers trace without graph breaks (one graph per block shape, the first GPU
    run with a per-call cached scale ran at half speed compiled) and give the eager result."""
    import torch._dynamo

    from wan.models.dit.loading import load_dit
    from wan.runtime.fp8_matmul import enable_fp8_fast
    from wan.weights.fp8 import quantize_fp8

    torch._dynamo.reset()
    cfg = CFG.tiny(num_layers=2)
    model = load_dit(quantize_fp8(random_weights(cfg)), dtype=torch.float32)
    enable_fp8_fast(model, check_device=False)
    inp = make_inputs(cfg, frames=1, height=2, width=4)
    plain = _run(model, inp)
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compile_blocks(model, TorchCompileArgs(backend=counting_backend, fullgraph=True))
    out = _run(model, inp)
    _run(model, inp, t=torch.tensor([401.0]))
    assert len(graphs) == 1, len(graphs)
    assert (out - plain).abs().max().item() <= 1e-6 * plain.abs().max().item()
