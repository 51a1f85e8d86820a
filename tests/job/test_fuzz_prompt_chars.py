"""Prompts of every Unicode category, lone surrogates (JSON allows "\\ud800") and values that are no
text at all, through the tokenizer and through Wan Text Encode's own code: each either encodes or
raises WanInputError naming the input. Hypothesis: 300 tokenizer and 25 node examples, 2 s each.
"""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refs import import_pack
from tiny_models import spiece_model, write_umt5
from wan.errors import WanInputError
from wan.job.load import load_text_encoder
from wan.models.text.tokenizer import MAX_LEN, WanTokenizer

_TOK = WanTokenizer.from_spiece_bytes(spiece_model())
# no codec: every category, surrogates (Cs) and private use included
any_text = st.text(st.characters(), max_size=200)
surrogates = st.lists(st.one_of(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.characters()),
                      max_size=40).map("".join)


@settings(max_examples=300, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(any_text, surrogates))
def test_any_code_points_tokenize(prompt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, mask = _TOK([prompt])
    n = int(mask.sum())
    assert ids.shape == (1, MAX_LEN) and 1 <= n <= MAX_LEN and int(ids[0, n - 1]) == _TOK.eos_id
    assert int(ids.max()) < _TOK.vocab_size


def test_a_lone_surrogate_reads_as_the_replacement_character():
    assert _TOK.encode("red \ud800 house") == _TOK.encode("red \ufffd house")
    assert _TOK.encode("a \ud83d\ude00 b") == _TOK.encode("a \U0001F600 b")  # a split pair is joined


@pytest.fixture(scope="module")
def text_node(tmp_path_factory):
    pack = import_pack()
    encoder = load_text_encoder(write_umt5(tmp_path_factory.mktemp("umt5") / "umt5.safetensors"))
    node = sys.modules[f"{pack.__name__}.nodes.encoders"].WanTextEncode()
    return node, encoder, sys.modules[f"{pack.__name__}.wan.errors"].WanInputError  # the pack's own copy


not_text = st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2), st.binary(max_size=4))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(positive=st.one_of(surrogates, any_text, not_text), negative=st.one_of(surrogates, not_text))
def test_wan_text_encode_encodes_or_names_the_input(text_node, positive, negative):
    node, encoder, pack_input_error = text_node
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (embeds,) = node.encode(encoder, positive, negative)
    except pack_input_error as exc:
        assert "positive_prompt" in str(exc) or "negative_prompt" in str(exc)
        return
    assert torch.isfinite(embeds.positive).all()
