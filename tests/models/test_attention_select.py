"""attention auto and the guard of optional kernels, on the CPU with fake packages: auto picks by
the GPU's compute capability and the packages present (capability queries monkeypatched), falls
back to SDPA with one notice; a kernel that raises or returns NaN is replaced by SDPA and says so
once; a call of a shape the kernel does not take goes to SDPA.

comfy-kitchen's INT8 attention has no CPU path (its only implementation is the CUDA extension), so
its accuracy against SDPA is measured only on a GPU (tests/runtime/test_runtime_gpu.py)."""

import dataclasses
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from dit_fixtures import make_inputs, random_weights, tiny_config
from wan.errors import WanInputError
from wan.models.dit import attention_backends, attention_select
from wan.models.dit.attention_select import AutoKernel, attention_kernel, choose
from wan.models.dit.model import WanDiT
from wan.notices import collected
from wan.runtime.cancel import Cancelled

CUDA = torch.device("cuda")


def _qkv(d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, n, 2, d, generator=g) for n in (6, 5, 5))


def _sdpa(q, k, v):  # the reference, written out: SDPA over [B, H, L, D]
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """Fake comfy_kitchen / sageattention packages: ``packages(name, version)`` installs one; the
    kernel each runs is ``packages.behaviour`` (default: exact SDPA); a GPU of capability
    ``packages.capability`` is present."""
    state = types.SimpleNamespace(behaviour=_sdpa, available=True, capability=(9, 0), calls=0)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("comfy_kitchen", "sageattention"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: state.capability)
    monkeypatch.setattr(attention_select, "_SAID", set())

    def kernel(q, k, v, **_):
        state.calls += 1
        return state.behaviour(q, k, v)

    def install(name, version="1.0"):
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (tmp_path / f"{name}-{version}.dist-info").mkdir()
        (tmp_path / f"{name}-{version}.dist-info" / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
        module = __import__(name)
        if name == "comfy_kitchen":
            # [B, H, L, D] in and out, as comfy-kitchen's int8_attention
            module.int8_attention = lambda q, k, v, **kw: kernel(q.transpose(1, 2), k.transpose(1, 2),
                                                                   v.transpose(1, 2)).transpose(1, 2)
            module.int8_attention_is_available = lambda device=None: state.available
        else:
            module.sageattn = lambda q, k, v, **kw: kernel(q, k, v)

    state.install = install
    yield state
    for name in ("comfy_kitchen", "sageattention"):  # the fakes must not outlive the test
        sys.modules.pop(name, None)


def _on_cpu_too(monkeypatch, mode):
    # let an optional kernel take CPU tensors, so its guard is exercised here
    table = dict(attention_backends.OPTIONAL_KERNELS)
    table[mode] = dataclasses.replace(table[mode], devices=("cuda", "cpu"))
    monkeypatch.setattr(attention_backends, "OPTIONAL_KERNELS", types.MappingProxyType(table))


def test_auto_on_cpu_is_sdpa_and_silent():
    q, k, v = _qkv()
    kernel = attention_kernel("auto", "cpu")
    with collected() as notices:
        out = kernel(q, k, v)
    assert kernel.chosen == "sdpa" and notices == []
    torch.testing.assert_close(out, _sdpa(q, k, v), rtol=0, atol=0)
    assert choose(torch.device("cpu")) == ("sdpa", [])


def test_auto_order_by_capability_and_packages(packages):
    packages.install("comfy_kitchen")
    packages.install("sageattention", "2.1.1")
    assert choose(CUDA) == ("int8", [])
    packages.capability = (7, 5)  # Turing: int8 yes, SageAttention 2 no
    assert choose(CUDA)[0] == "int8"
    packages.available = False  # the wheel's own check says no (no CUDA extension for this GPU)
    packages.capability = (8, 9)
    mode, reasons = choose(CUDA)
    assert mode == "sage" and reasons == ["int8 comfy-kitchen's INT8 attention kernel is not available for this GPU"]
    packages.capability = (7, 0)
    mode, reasons = choose(CUDA)
    assert mode == "sdpa"
    assert reasons == ["int8 needs a GPU of compute capability 7.5 or newer (this one is 7.0)",
                       "sage needs a GPU of compute capability 8.0 or newer (this one is 7.0)"]


def test_auto_passes_over_sage_1_and_missing_packages(packages):
    packages.install("sageattention", "1.0.6")
    mode, reasons = choose(CUDA)
    assert mode == "sdpa"
    assert reasons[0].startswith("int8 needs the comfy-kitchen")
    assert reasons[1] == "sage sageattention 1.0.6 is slower than sdpa (2.0 or newer is used)"


def test_auto_falls_back_with_one_notice(packages):
    q, k, v = _qkv()
    packages.capability = (8, 0)
    with collected() as notices:
        for _ in range(2):  # two models loaded in one process: said once
            kernel = AutoKernel()
            kernel._resolve(CUDA)
            assert kernel.chosen == "sdpa"
            torch.testing.assert_close(kernel.kernel(q, k, v), _sdpa(q, k, v))
    assert len(notices) == 1
    assert notices[0].startswith("attention auto: using sdpa (int8 needs the comfy-kitchen")


def test_auto_runs_the_chosen_kernel(packages, monkeypatch):
    packages.install("comfy_kitchen")
    _on_cpu_too(monkeypatch, "int8")
    monkeypatch.setattr(attention_select, "choose", lambda device: ("int8", []))
    q, k, v = _qkv()
    kernel = AutoKernel()
    with collected() as notices:
        out = kernel(q, k, v)
    assert kernel.chosen == "int8" and packages.calls == 1 and notices == []
    torch.testing.assert_close(out, _sdpa(q, k, v))


@pytest.mark.parametrize("failure", ["raises", "nan"])
def test_failing_kernel_falls_back_and_says_so_once(packages, monkeypatch, failure):
    packages.install("comfy_kitchen")
    _on_cpu_too(monkeypatch, "int8")

    def bad(q, k, v):
        if failure == "raises":
            raise RuntimeError("no kernel image is available for execution on the device")
        return torch.full_like(q, float("nan"))

    packages.behaviour = bad
    kernel = attention_kernel("int8", "cpu")
    q, k, v = _qkv()
    with collected() as notices:
        for _ in range(3):
            torch.testing.assert_close(kernel(q, k, v), _sdpa(q, k, v))
    assert packages.calls == 1  # replaced for good after its first call
    assert len(notices) == 1
    expected = ("failed (RuntimeError: no kernel image" if failure == "raises"
                else "gave non-finite values from finite inputs")
    assert notices[0].startswith(f"attention int8: {expected}") and notices[0].endswith("using sdpa from now on")


def test_nan_inputs_are_not_the_kernels_fault(packages, monkeypatch):
    packages.install("comfy_kitchen")
    _on_cpu_too(monkeypatch, "int8")
    packages.behaviour = lambda q, k, v: _sdpa(q, k, v) + q.sum()  # NaN in, NaN out
    kernel = attention_kernel("int8", "cpu")
    q, k, v = _qkv()
    q[0, 0, 0, 0] = float("nan")
    with collected() as notices:
        assert torch.isnan(kernel(q, k, v)).any()
        assert torch.isfinite(kernel(*_qkv())).all()
    assert notices == [] and packages.calls == 2  # kept: the job's own NaN check reports it


def test_unsupported_shape_goes_to_sdpa(packages, monkeypatch):
    packages.install("sageattention", "2.1.1")
    _on_cpu_too(monkeypatch, "sage")
    kernel = attention_kernel("sage", "cpu")
    with collected() as notices:
        for _ in range(2):
            q, k, v = _qkv(d=40)  # SageAttention takes head dims 64, 96, 128
            torch.testing.assert_close(kernel(q, k, v), _sdpa(q, k, v), rtol=0, atol=0)
        kernel(*_qkv(d=64))
    assert notices == ["attention sage: cannot take head dim 40; those calls use sdpa"]
    assert packages.calls == 1


def test_cpu_tensors_never_reach_a_cuda_kernel(packages):
    packages.install("comfy_kitchen")
    kernel = attention_kernel("int8", "cpu")  # loaded on the CPU (it may compute on a GPU later)
    q, k, v = _qkv()
    with collected() as notices:
        torch.testing.assert_close(kernel(q, k, v), _sdpa(q, k, v), rtol=0, atol=0)
    assert notices == ["attention int8: cannot take device cpu; those calls use sdpa"] and packages.calls == 0


def test_cancel_inside_the_kernel_is_not_a_fallback(packages, monkeypatch):
    packages.install("comfy_kitchen")
    _on_cpu_too(monkeypatch, "int8")

    def cancelled(q, k, v):
        raise Cancelled("stopped")

    packages.behaviour = cancelled
    kernel = attention_kernel("int8", "cpu")
    with pytest.raises(Cancelled):
        kernel(*_qkv())
    packages.behaviour = _sdpa
    with collected() as notices:
        kernel(*_qkv())
    assert notices == [] and packages.calls == 2


def test_explicit_mode_on_an_old_gpu_is_refused(packages):
    packages.install("comfy_kitchen")
    packages.capability = (7, 0)
    with pytest.raises(WanInputError, match=r"attention_mode 'int8' needs a GPU of compute capability 7.5 or newer"):
        WanDiT(tiny_config("t2v_1_3b")).set_attention("int8", "cuda")


def test_model_with_auto_equals_sdpa_on_cpu():
    cfg = tiny_config("t2v_1_3b")
    sd = random_weights(cfg)
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    outs = []
    for mode in ("sdpa", "auto"):
        m = WanDiT(cfg)
        m.load_state_dict(sd)
        m.eval().set_attention(mode, "cpu")
        with torch.no_grad():
            outs.append(m(inp.x, inp.t, inp.context))
    assert torch.equal(outs[0], outs[1])
