"""Hostile prompts for the UMT5 tokenizer (the tiny sentencepiece model of tests/support/tiny_models.py):
any Unicode text, control characters, HTML entities and very long prompts give [1, 512] ids with
EOS closing the mask, pad after it, and a warning (not an error) when the prompt is cut.
Hypothesis: 300 examples, 2 s deadline each.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiny_models import spiece_model
from wan.models.text.tokenizer import MAX_LEN, WanTokenizer

_TOK = WanTokenizer.from_spiece_bytes(spiece_model())
_NASTY = st.sampled_from(["\x00", "\x1b[31m", "\r\n", "\t", "\u202e", "\ufeff", "\U0001F600", "&amp;lt;", "&#0;",
                          "&#xD800;", " " * 50, "red house ", "\x7f", "\u0301" * 20])


def _check(ids, mask):
    assert ids.shape == mask.shape == (1, MAX_LEN)
    n = int(mask.sum())
    assert 1 <= n <= MAX_LEN
    assert mask[0, :n].all() and not mask[0, n:].any()
    assert int(ids[0, n - 1]) == _TOK.eos_id
    assert (ids[0, n:] == _TOK.pad_id).all()
    assert int(ids.min()) >= 0 and int(ids.max()) < _TOK.vocab_size


@settings(max_examples=300, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(st.characters(codec="utf-8"), max_size=300),
                 st.lists(_NASTY, max_size=40).map("".join)))
def test_any_prompt_tokenizes_to_a_valid_row(prompt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, mask = _TOK([prompt])
    _check(ids, mask)


def test_100k_characters_are_cut_with_a_warning():
    prompt = "\x00\x1b[31m" + "red house on a green hill " * 4000  # ~100k characters
    assert len(prompt) > 100_000
    with pytest.warns(UserWarning, match="only the first 512 are used"):
        ids, mask = _TOK([prompt])
    _check(ids, mask)
    assert int(mask.sum()) == MAX_LEN
