"""The option nodes of nodes/perf_options.py build the library's option objects from widget values
(imported as ComfyUI imports the pack: refs.import_pack)."""

import importlib
import os
import sys
from dataclasses import asdict

import pytest

from refs import import_pack
from wan.runtime.blockswap import BlockSwapArgs
from wan.runtime.cache import CacheArgs
from wan.runtime.compile import TorchCompileArgs
from wan.runtime.feta import FetaArgs


@pytest.fixture(scope="module")
def perf():
    return importlib.import_module(import_pack().__name__ + ".nodes.perf_options")


def _defaults(cls):
    return {k: v[1].get("default") for k, v in cls.INPUT_TYPES()["required"].items()}


def _same(made, expected):
    # the pack's modules load as <folder>.wan..., the tests' as wan...: compare by name and fields
    assert type(made).__name__ == type(expected).__name__ and asdict(made) == asdict(expected)


def test_nodes_build_options(perf):
    # the widget's default -1 is "auto"; a number saved in an older workflow still means that number
    _same(perf.WanBlockSwapArgs().make(**_defaults(perf.WanBlockSwapArgs))[0], BlockSwapArgs("auto", False, True))
    _same(perf.WanBlockSwapArgs().make(20, False, True)[0], BlockSwapArgs(20, False, True))
    c = perf.WanTorchCompileArgs().make(**{**_defaults(perf.WanTorchCompileArgs), "dynamic": "false"})[0]
    # compile caches under ComfyUI's user folder, never inductor's /tmp default
    user = sys.modules["folder_paths"].get_user_directory()
    _same(c, TorchCompileArgs("inductor", "default", False, False, True, 64,
                              cache_dir=os.path.join(user, "wan-nodes-cache")))
    _same(perf.WanCacheArgs().make(**_defaults(perf.WanCacheArgs))[0], CacheArgs())
    _same(perf.WanEnhanceVideoArgs().make(**_defaults(perf.WanEnhanceVideoArgs))[0], FetaArgs())
    assert "inductor" in perf.WanTorchCompileArgs.VALIDATE_INPUTS(backend="eager", mode="max-autotune")
    assert "before start_step" in perf.WanCacheArgs.VALIDATE_INPUTS(start_step=5, end_step=2)
    assert set(perf.NODE_CLASS_MAPPINGS) == set(perf.NODE_DISPLAY_NAME_MAPPINGS)
