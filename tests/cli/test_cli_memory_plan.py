"""``python -m wan generate --block-swap auto|N --memory-budget GB``: auto is the default, a number
still means that number, and anything else is refused by the parser."""

import argparse

import pytest

from wan.cli import generate
from wan.runtime.blockswap import BlockSwapArgs


def _parse(*extra):
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    return parser.parse_args(["--prompt", "a cat", "--out", "x.mp4", *extra])


def test_block_swap_defaults_to_auto_and_takes_a_number():
    load, run = generate._options(_parse())
    assert load.block_swap == BlockSwapArgs("auto") and run.memory_budget is None
    load, run = generate._options(_parse("--block-swap", "12", "--memory-budget", "11.5"))
    assert load.block_swap == BlockSwapArgs(12) and run.memory_budget == 11_500_000_000
    assert generate._options(_parse("--block-swap", "auto"))[0].block_swap.auto


@pytest.mark.parametrize("bad", ["-1", "some", "2.5"])
def test_block_swap_refuses_other_values(bad, capsys):
    with pytest.raises(SystemExit):
        _parse("--block-swap", bad)
    assert "expected auto or a number of blocks" in capsys.readouterr().err
