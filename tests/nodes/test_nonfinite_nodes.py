"""The nodes meet NaN/Inf with the library's own messages, before any model is loaded: the sampler's
numbers and its start latent (check_lazy_status), the options nodes, VALIDATE_INPUTS of the window nodes."""

import importlib

import pytest
import torch

from refs import import_pack

NAN = float("nan")


@pytest.fixture(scope="module")
def nodes():
    pack = import_pack().__name__
    return {m: importlib.import_module(f"{pack}.nodes.{m}") for m in ("sampler", "perf_options", "options")}


@pytest.fixture(scope="module")
def WanInputError():  # the pack's own class (the pack is imported under another name)
    return importlib.import_module(f"{import_pack().__name__}.wan.errors").WanInputError


def lazy(node, **changes):
    kw = dict(steps=4, cfg=5.0, shift=5.0, seed=0, sampler="unipc", denoise_strength=1.0,
              model=None, text_embeds=None, image_embeds=None)
    kw.update(changes)
    return node.check_lazy_status(**kw)


def test_sampler_numbers_and_start_latent(nodes, WanInputError):
    node = nodes["sampler"].WanSampler()
    assert lazy(node) == ["model", "text_embeds", "image_embeds"]
    for name in ("cfg", "shift"):
        with pytest.raises(WanInputError, match=rf"^{name} is nan: give a finite number"):
            lazy(node, **{name: NAN})
    with pytest.raises(WanInputError, match=r"^denoise is inf"):
        lazy(node, denoise_strength=float("inf"))
    latent = torch.zeros(1, 16, 2, 4, 4)
    latent[0, 0, 0, 0, 0] = NAN
    with pytest.raises(WanInputError, match=r"start latent \(samples\) contains NaN"):
        lazy(node, samples={"samples": latent})


def test_options_nodes(nodes, WanInputError):
    with pytest.raises(WanInputError, match=r"cache threshold is nan"):
        nodes["perf_options"].WanCacheArgs().make(NAN, 1, -1, "e0", "auto", False)
    check = nodes["options"].WanContextOptions.VALIDATE_INPUTS
    assert check(context_frames=81, context_overlap=NAN) == "context_overlap is nan: give a finite number"
