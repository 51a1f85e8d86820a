"""Where the text encoder runs is the memory plan's decision (plan.encoder_device), applied where
prompts are encoded: on the device when it fits beside the job's sampling peak, there only for the
encode when it fits beside the weights alone, else on the CPU; the job's plan line says where it ran.
The device is simulated: a budget, the encoder's moves recorded instead of made."""

import logging

import pytest
import torch

from tiny_models import write_set
import wan.job.memory as memory
from wan.job.options import LoadOptions, RunOptions
from wan.job.pipelines import T2VPipeline
from wan.runtime.blockswap import BlockSwapArgs
from wan.runtime.plan import encoder_device

GIB = 1 << 30


def test_three_places():
    assert encoder_device(2 * GIB, 4 * GIB, 6 * GIB, 8 * GIB, "cuda") == "cuda"
    assert encoder_device(3 * GIB, 4 * GIB, 6 * GIB, 8 * GIB, "cuda") == "cuda for the encode, then cpu"
    assert encoder_device(5 * GIB, 4 * GIB, 6 * GIB, 8 * GIB, "cuda") == "cpu"


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    files = write_set(tmp_path_factory.mktemp("models"), only=("t2v_gguf", "umt5", "vae21"))
    p = T2VPipeline.from_files(files["t2v_gguf"], files["umt5"], files["vae21"],
                               options=LoadOptions(dtype=torch.float32, device="cpu", attention="sdpa"))
    p.dit._wan_auto_swap = memory.AutoSwap(BlockSwapArgs(), torch.device("cuda"), torch.device("cpu"))
    return p


@pytest.mark.parametrize("room", ["peak", "weights", "none"])
def test_prompt_encode_runs_where_the_plan_says(pipe, monkeypatch, caplog, room):
    monkeypatch.setattr(memory, "_place", lambda m, auto, n: None)  # no CUDA here: blocks stay put
    moves = []
    model = pipe.text_encoder.model
    monkeypatch.setattr(model, "to", lambda device: moves.append(str(device)) or model, raising=False)
    te = memory.encoder_bytes(pipe.text_encoder)
    assert te == sum(t.numel() * t.element_size() for t in model.state_dict().values())
    job = dict(width=64, height=64, num_frames=5, steps=1, cfg=3.0, seed=1)
    bare = memory.job_plan([pipe.dit], (1, 16, 2, 8, 8), 2, budget=1 << 40)
    budget = {"peak": bare.predicted_peak_bytes + te, "weights": bare.predicted_peak_bytes + te - 1,
              "none": 1}[room]
    if room == "none":  # too small for even the DiT: refused before the encoder is touched
        with pytest.raises(Exception, match="needs at least"):
            pipe.prepare("a cat", "blur", run=RunOptions(memory_budget=budget), **job)
        assert moves == []
        return
    prepared = pipe.prepare("a cat", "blur", run=RunOptions(memory_budget=budget), **job)
    expected = {"peak": ["cuda"], "weights": ["cuda", "cpu"]}[room]
    assert moves == expected
    assert prepared.text.positive.shape[-2] == 512
    with caplog.at_level(logging.INFO, logger="wan.job.memory"):
        memory.plan_job([pipe.dit], (1, 16, 2, 8, 8), 2, budget=budget)
    line = {"peak": "text encoder on cuda;", "weights": "text encoder on cuda for the encode, then cpu;"}[room]
    assert line in caplog.text


def test_encoder_goes_to_the_cpu_when_it_does_not_fit_beside_the_weights(pipe, monkeypatch, caplog):
    monkeypatch.setattr(memory, "_place", lambda m, auto, n: None)
    moves = []
    model = pipe.text_encoder.model
    monkeypatch.setattr(model, "to", lambda device: moves.append(str(device)) or model, raising=False)
    te = memory.encoder_bytes(pipe.text_encoder)
    bare = memory.job_plan([pipe.dit], (1, 16, 2, 8, 8), 2, budget=1 << 40)
    held = sum(t.numel() * t.element_size() for t in pipe.dit.state_dict().values())  # the DiT's weights
    budget = held + te - 1  # the encoder fits neither beside the peak nor beside the weights
    assert budget >= bare.predicted_peak_bytes  # but the DiT does, whole
    pipe.prepare("a cat", "blur", run=RunOptions(memory_budget=budget), width=64, height=64, num_frames=5,
                 steps=1, cfg=3.0)
    assert moves == ["cpu"]
    with caplog.at_level(logging.INFO, logger="wan.job.memory"):
        plan = memory.plan_job([pipe.dit], (1, 16, 2, 8, 8), 2, budget=budget)
    assert plan.streamed == 0 and "text encoder on cpu;" in caplog.text
