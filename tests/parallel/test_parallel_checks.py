"""A layout the run cannot take is refused with a WanInputError before any model work: a Ulysses
degree that does not divide the heads, more processes asked than started, more processes on a
machine than GPUs, a malformed --parallel; and the all-to-all volume against a hand calculation."""

import pytest
import torch

from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds, t2v_conditioning
from wan.job.options import LoadOptions, RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.parallel.layout import ParallelLayout
from wan.parallel.rank import rank_device
from wan.parallel.scaling import alltoall_volume, latent_tokens
from dit_fixtures import our_model, random_weights, tiny_config


def test_heads_not_divisible_names_heads_and_the_ring_way_out():
    with pytest.raises(WanInputError, match=r"ulysses=8 does not divide the 12 attention heads.*ulysses=4,ring=2"):
        ParallelLayout(ulysses=8).check_heads(12)
    ParallelLayout(ulysses=4, ring=2).check_heads(12)
    ParallelLayout(ulysses=8).check_heads(40)


def test_parse_and_bad_specs():
    assert ParallelLayout.parse("ulysses=2,cfg=2") == ParallelLayout(cfg=2, ulysses=2)
    assert ParallelLayout.parse("ring=3").size == 3
    for bad, words in (("foo=2", "KEY one of"), ("ulysses=two", "not a whole number"), ("cfg=3", "1 or 2"),
                       ("ring=0", ">= 1"), ("ulysses=2,ulysses=2", "given twice"), ("", "at least one")):
        with pytest.raises(WanInputError, match=words):
            ParallelLayout.parse(bad)


def test_auto_layout():
    assert ParallelLayout.auto(8, 12, cfg_parallel=True) == ParallelLayout(cfg=2, ulysses=4)
    assert ParallelLayout.auto(8, 12, cfg_parallel=False) == ParallelLayout(ulysses=4, ring=2)
    assert ParallelLayout.auto(3, 40, cfg_parallel=True) == ParallelLayout(ring=3)


def test_more_processes_asked_than_started_refused_before_the_model_runs():
    cfg = tiny_config("t2v_1_3b")
    model = our_model(cfg, random_weights(cfg))
    calls = []
    model.register_forward_pre_hook(lambda *a: calls.append(1))
    text = PromptEmbeds(torch.zeros(1, 3, cfg.text_dim), torch.zeros(1, 3, cfg.text_dim))
    with pytest.raises(WanInputError, match=r"ulysses=2 needs 2 processes.*torchrun --nproc-per-node 2"):
        sample_video(model, text, t2v_conditioning(32, 32, 5, 16), SamplingOptions(steps=2, cfg=2.0),
                     RunOptions(parallel=ParallelLayout(ulysses=2)))
    assert calls == []
    with pytest.raises(WanInputError, match="needs 4 processes, but 2 were started"):
        ParallelLayout(cfg=2, ulysses=2).check_world(2)


def test_more_processes_than_gpus_on_a_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert rank_device(0, LoadOptions(device="cuda")) == torch.device("cuda", 0)
    with pytest.raises(WanInputError, match="needs GPU 1, but only 1 GPU is present"):
        rank_device(1, LoadOptions(device="cuda"))
    assert rank_device(3, LoadOptions(device="cpu")) == torch.device("cpu")


def test_run_options_refuse_a_layout_of_another_type():
    with pytest.raises(WanInputError, match="must be a ParallelLayout"):
        RunOptions(parallel="ulysses=2")


def test_alltoall_volume_by_hand():
    # 1.3B at 832x480x81: 21 latent frames x 30 x 52 = 32,760 tokens, dim 1536, bf16.
    assert latent_tokens(832, 480, 81) == 32760 and latent_tokens(1280, 720, 81) == 75600
    v = alltoall_volume(32760, 1536, 2)
    # each rank holds 16,380 tokens x 1536 x 2 B = 50,319,360 B per activation; q, k, v and the
    # output each send half of it: 4 x 25,159,680 B
    assert v.per_rank == 100_638_720 and v.total == 201_277_440
    assert alltoall_volume(32760, 1536, 1).per_rank == 0
