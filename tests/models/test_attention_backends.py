"""attention_mode: sdpa always works; a mode whose package is missing is a clear WanInputError
naming the package (never a silent fallback); an unknown mode lists the known ones. The kernel is
an attribute of each attention module: the model computes with it, and two models do not share it."""

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F

from dit_fixtures import make_inputs, random_weights, tiny_config
from wan.errors import WanInputError
from wan.models.dit.attention_backends import ATTENTION_MODES, OPTIONAL_KERNELS
from wan.models.dit.attention_select import attention_kernel
from wan.models.dit.layers import WanSelfAttention
from wan.models.dit.model import WanDiT

CFG = tiny_config("vace_1_3b")


def _kernels(m):
    return [mod.kernel for mod in m.modules() if isinstance(mod, WanSelfAttention)]


def _model(seed=0):
    m = WanDiT(CFG)
    m.load_state_dict(random_weights(CFG, seed))
    return m.eval()


def _run(m, inp):
    with torch.no_grad():
        return m(inp.x, inp.t, inp.context, vace_context=inp.vace_context)


def test_sdpa_and_unknown():
    m = WanDiT(CFG)
    attn = _kernels(m)
    # self- and cross-attention of every main and VACE block
    assert len(attn) == 2 * (CFG.num_layers + len(CFG.vace_layers))
    m.set_attention("sdpa")
    q, k, v = (torch.randn(2, n, 3, 8, generator=torch.Generator().manual_seed(n)) for n in (5, 4, 4))
    expected = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    for kernel in _kernels(m):
        torch.testing.assert_close(kernel(q, k, v), expected, rtol=0, atol=0)
    with pytest.raises(WanInputError, match="unknown attention_mode 'xformers'.*sageattention"):
        m.set_attention("xformers")
    # the older names stay valid, so saved workflows load
    assert ATTENTION_MODES == ("auto", "sdpa", "int8", "sage", "flash_attn", "flash_attn_3", "sageattention")


def test_model_computes_with_its_own_kernel():
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    plain, other = _model(), _model()
    expected = _run(plain, inp)
    calls = []

    def counting(q, k, v):
        calls.append(q.shape)
        return attention_kernel("sdpa")(q, k, v)

    for mod in other.modules():
        if isinstance(mod, WanSelfAttention):
            mod.kernel = counting
    assert torch.equal(_run(other, inp), expected)
    # one call per self- and text cross-attention of the 4 main and 2 VACE blocks
    assert len(calls) == 12
    # a kernel changed on one model leaves another model (and so any global default) alone
    other.blocks[0].self_attn.kernel = lambda q, k, v: torch.zeros_like(q)
    assert not torch.equal(_run(other, inp), expected)
    assert torch.equal(_run(plain, inp), expected)
    assert all(k is attention_kernel("sdpa") for k in _kernels(WanDiT(CFG)))


@pytest.mark.parametrize("mode", sorted(OPTIONAL_KERNELS))
def test_missing_package_is_a_clear_error(mode):
    package, install = OPTIONAL_KERNELS[mode].package, OPTIONAL_KERNELS[mode].install
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    m = WanDiT(CFG)
    with pytest.raises(WanInputError) as e:
        m.set_attention(mode)
    assert str(e.value) == f"attention_mode {mode!r} needs the {install} package, which is not installed"
    assert all(k is attention_kernel("sdpa") for k in _kernels(m))  # unchanged


def test_installed_but_broken_package(tmp_path, monkeypatch):
    # A package that is found but fails to import (wrong CUDA build) is reported as such.
    pkg = tmp_path / "sageattention"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('libcudart.so.11 not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sageattention", raising=False)
    with pytest.raises(WanInputError, match="installed but cannot be imported.*libcudart"):
        WanDiT(CFG).set_attention("sageattention")
