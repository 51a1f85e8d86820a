"""attention_mode: sdpa always works; a mode whose package is missing is a clear WanInputError
naming the package (never a silent fallback); an unknown mode lists the known ones."""

import importlib.util

import pytest
import torch

from wan.models.dit.config import DIT_PRESETS
from wan.errors import WanInputError
from wan.models.dit.attention import BACKENDS
from wan.models.dit.attention_backends import OPTIONAL_BACKENDS, available_modes, set_attention_backend
from wan.models.dit.model import WanDiT

CFG = DIT_PRESETS["t2v_1_3b"].tiny(num_layers=1)


def _modes(m):
    return {mod.attn_mode for mod in m.modules() if hasattr(mod, "attn_mode")}


def test_sdpa_and_unknown():
    m = WanDiT(CFG)
    set_attention_backend(m, "sdpa")
    assert _modes(m) == {"sdpa"} and "sdpa" in available_modes()
    with pytest.raises(WanInputError, match="unknown attention_mode 'xformers'.*sageattention"):
        set_attention_backend(m, "xformers")


@pytest.mark.parametrize("mode", sorted(OPTIONAL_BACKENDS))
def test_missing_package_is_a_clear_error(mode):
    package, install, _ = OPTIONAL_BACKENDS[mode]
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    m = WanDiT(CFG)
    with pytest.raises(WanInputError) as e:
        set_attention_backend(m, mode)
    assert str(e.value) == f"attention_mode {mode!r} needs the {install} package, which is not installed"
    assert _modes(m) == {"sdpa"}  # unchanged


def test_installed_but_broken_package(monkeypatch):
    # A package that is found but fails to import (wrong CUDA build) is reported as such.
    def broken():
        raise ImportError("libcudart.so.11 not found")

    monkeypatch.setitem(OPTIONAL_BACKENDS, "sageattention", ("torch", "sageattention", broken))
    monkeypatch.delitem(BACKENDS, "sageattention", raising=False)  # registered by an earlier test where installed
    with pytest.raises(WanInputError, match="installed but cannot be imported.*libcudart"):
        set_attention_backend(WanDiT(CFG), "sageattention")
