"""NAG against a direct implementation of its paper's formula (Chen et al. 2025, arXiv 2505.21179):
every text cross-attention of a tiny Wan DiT replaced, for the reference run, by one written here
from the formula (softmax attention for Z+ and Z-, Z~ = Z+ + s (Z+ - Z-), the per-token L1 ratio
clipped at tau, alpha blend, then the unguided image path and the output projection)."""

import pytest
import torch
import torch.nn.functional as F

from dit_fixtures import check, make_inputs, our_model, random_weights, tiny_config
from wan.errors import WanInputError
from wan.models.dit.layers import WanCrossAttention
from wan.sampling.nag import NAGOptions, use_nag
from wan.sampling.step import Step


def softmax_attention(q, k, v):
    """[B, L, H, D] -> [B, Lq, H*D]."""
    w = torch.einsum("blhd,bmhd->bhlm", q.float(), k.float()) / q.shape[-1] ** 0.5
    return torch.einsum("bhlm,bmhd->blhd", w.softmax(-1), v.float()).flatten(2).to(q.dtype)


def paper_forward(negative, args):
    def forward(self, x, context, context_img_len=0):
        img, txt = context[:, :context_img_len], context[:, context_img_len:]
        heads = lambda t: t.unflatten(-1, (self.num_heads, self.head_dim))  # noqa: E731
        q = heads(self.norm_q(self.q(x)))
        neg = negative.expand(x.shape[0], -1, -1)
        z_pos = softmax_attention(q, heads(self.norm_k(self.k(txt))), heads(self.v(txt)))
        z_neg = softmax_attention(q, heads(self.norm_k(self.k(neg))), heads(self.v(neg)))
        z_tilde = z_pos + args.scale * (z_pos - z_neg)
        ratio = z_tilde.norm(p=1, dim=-1, keepdim=True) / z_pos.norm(p=1, dim=-1, keepdim=True)
        z_hat = z_tilde * torch.clamp(ratio, max=args.tau) / ratio
        out = args.alpha * z_hat + (1 - args.alpha) * z_pos
        if context_img_len:
            out = out + softmax_attention(q, heads(self.norm_k_img(self.k_img(img))), heads(self.v_img(img)))
        return self.o(out)
    return forward


@pytest.mark.parametrize("variant", ["t2v_1_3b", "i2v_14b"])
@pytest.mark.parametrize("args", [NAGOptions(), NAGOptions(scale=4.0, tau=1.5, alpha=0.5), NAGOptions(scale=2.0, tau=100.0, alpha=1.0)])
def test_nag_matches_the_paper_formula(monkeypatch, variant, args):
    cfg = tiny_config(variant)
    dit = our_model(cfg, random_weights(cfg, seed=6))
    inp = make_inputs(cfg, seed=4)
    negative = torch.randn(1, 5, cfg.text_dim, generator=torch.Generator().manual_seed(3))
    kw = dict(clip_fea=inp.clip_fea, y=inp.y)
    step = Step(0, 1, torch.tensor(0.6), inp.t)
    with torch.no_grad():
        plain = dit(inp.x, inp.t, inp.context, **kw)
        with use_nag(dit, args, negative) as wrap:
            ours = wrap(lambda s, x, t, c, **k: dit(x, t, c, **k))(step, inp.x, inp.t, inp.context, **kw)
        assert torch.equal(dit(inp.x, inp.t, inp.context, **kw), plain)  # nothing left behind
        embedded = dit.text_embedding(F.pad(negative, (0, 0, 0, cfg.text_len - negative.shape[1])))
        monkeypatch.setattr(WanCrossAttention, "forward", paper_forward(embedded, args))
        ref = dit(inp.x, inp.t, inp.context, **kw)
    assert (ours - plain).abs().max() > 1e-3  # the guidance changed the output
    check(ours, ref)


def test_nag_options_are_checked():
    for bad in (dict(scale=-1.0), dict(tau=0.0), dict(alpha=1.5)):
        with pytest.raises(WanInputError):
            NAGOptions(**bad)
    with pytest.raises(WanInputError):
        with use_nag(None, NAGOptions(), None):
            pass
