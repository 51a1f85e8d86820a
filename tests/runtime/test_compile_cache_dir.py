"""torch.compile's caches go under the folder the compile options name (ComfyUI's user folder from
the node, else the user's cache folder), never inductor's bare /tmp default, unless the user chose one."""

import os

import pytest
import torch

from wan.runtime.compile import TorchCompileArgs, compile_blocks


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 8)])

    def forward(self, x):
        return self.blocks[0](x).relu() * 2


@pytest.mark.parametrize("chosen", [False, True])
def test_compile_writes_under_the_chosen_folder(tmp_path, monkeypatch, chosen):
    user = tmp_path / "mine"
    for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    if chosen:
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(user))
    torch._dynamo.reset()
    model = compile_blocks(Tiny(), TorchCompileArgs(cache_dir=str(tmp_path / "comfy_user")))
    try:
        model(torch.randn(2, 8))
    except Exception as e:  # no C compiler here: the folder choice is still made before compiling
        pytest.skip(f"inductor cannot compile on this machine: {type(e).__name__}")
    finally:
        torch._dynamo.reset()
    expected = user if chosen else tmp_path / "comfy_user" / "torchinductor"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(expected)
    assert any(p.is_file() for p in expected.rglob("*")), "nothing written under the chosen folder"
