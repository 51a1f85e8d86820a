"""Enhance-A-Video: weight 0 is the plain model bit for bit; with a weight, the model equals the
plain model whose self-attention outputs are scaled by a score computed here independently (q and
k recomputed from each self-attention's input, the temporal attention formed frame pair by frame
pair as the paper describes), in fp32 within 1e-5 relative; start/end percent limit the steps, as
the sampler's Step says; the model is the plain one again afterwards and outside the run's forward."""

import math

import pytest
import torch

from dit_fixtures import make_inputs, random_weights
from wan.models.dit.config import DIT_PRESETS
from wan.errors import WanInputError
from wan.models.dit.attention import apply_rope
from wan.models.dit.model import WanDiT
from wan.runtime.feta import FetaArgs, use_feta
from wan.sampling.step import Step

CFG = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=2)
FRAMES = 3


def _model():
    m = WanDiT(CFG)
    m.load_state_dict(random_weights(CFG))
    return m.eval().requires_grad_(False)


def _naive_score(q, k, frames, weight):
    # q, k: [B, F*S, H, D]; one FxF softmax per (batch, position, head), off-diagonal mean
    b, l, h, d = q.shape
    s = l // frames
    total, count = 0.0, 0
    for bi in range(b):
        for si in range(s):
            for hi in range(h):
                qs = torch.stack([q[bi, f * s + si, hi] for f in range(frames)]).double()
                ks = torch.stack([k[bi, f * s + si, hi] for f in range(frames)]).double()
                a = torch.softmax(qs @ ks.T / math.sqrt(d), dim=-1)
                total += (a.sum() - a.trace()).item() / (frames * frames - frames)
                count += 1
    return max(1.0, total / count * (frames + weight))


def _reference_hooks(model, weight, scores):
    def hook(module, args, output):
        x, rope = args
        b, l, _ = x.shape
        n, d = module.num_heads, module.head_dim
        q = apply_rope(module.norm_q(module.q(x)).view(b, l, n, d), rope)
        k = apply_rope(module.norm_k(module.k(x)).view(b, l, n, d), rope)
        scores.append(_naive_score(q, k, FRAMES, weight))
        return output * scores[-1]
    return [blk.self_attn.register_forward_hook(hook) for blk in model.blocks]


def _run(model, inp, t=None):
    with torch.no_grad():
        return model(inp.x, inp.t if t is None else t, inp.context)


def _forward(model):
    return lambda step, x, t, context: model(x, t, context)


def _step(index=0, total=1):
    return Step(index, total, torch.tensor(1.0 - index / total), torch.tensor(1000.0 * (1 - index / total)))


def _run_step(forward, inp, step, t=None):
    with torch.no_grad():
        return forward(step, inp.x, inp.t if t is None else t, inp.context)


def test_weight_zero_is_plain_and_weight_matches_reference():
    torch.set_num_threads(2)
    inp = make_inputs(CFG, frames=FRAMES, height=2, width=4)
    model = _model()
    plain = _run(model, inp)
    kernels = [b.self_attn.kernel for b in model.blocks]
    with use_feta(model, FetaArgs(weight=0.0)) as wrap:
        assert torch.equal(_run_step(wrap(_forward(model)), inp, _step()), plain)

    with use_feta(model, FetaArgs(weight=4.0)) as wrap:
        enhanced = _run_step(wrap(_forward(model)), inp, _step())
        assert torch.equal(_run(model, inp), plain)  # a forward outside the run's chain is plain
    assert torch.equal(_run(model, inp), plain)  # uninstalled
    assert all(b.self_attn.kernel is k for b, k in zip(model.blocks, kernels))

    scores = []
    handles = _reference_hooks(model, 4.0, scores)
    ref = _run(model, inp)
    for h in handles:
        h.remove()
    assert any(s > 1.0 for s in scores), scores  # the test exercises a real scaling
    err = (enhanced - ref).abs().max().item()
    assert err <= 1e-5 * ref.abs().max().item(), err
    assert not torch.equal(enhanced, plain)


def test_percent_window_limits_steps():
    inp = make_inputs(CFG, frames=FRAMES, height=2, width=4)
    model = _model()
    ts = [torch.tensor([900.0]), torch.tensor([600.0]), torch.tensor([300.0]), torch.tensor([100.0])]
    plain = [_run(model, inp, t) for t in ts]
    # steps 0..3 of 4 -> 0, 0.25, 0.5, 0.75: only steps 1 and 2 fall inside [0.2, 0.5]
    with use_feta(model, FetaArgs(weight=4.0, start_percent=0.2, end_percent=0.5)) as wrap:
        forward = wrap(_forward(model))
        outs = [_run_step(forward, inp, _step(i, 4), t) for i, t in enumerate(ts)]
    same = [torch.equal(a, b) for a, b in zip(outs, plain)]
    assert same == [True, False, False, True]


def test_twice_on_one_model_is_refused():
    model = _model()
    with use_feta(model, FetaArgs(weight=1.0)):
        with pytest.raises(WanInputError, match="already active"):
            with use_feta(model, FetaArgs(weight=1.0)):
                pass


def test_args_validation():
    with pytest.raises(WanInputError, match="percents"):
        FetaArgs(start_percent=0.8, end_percent=0.2)
