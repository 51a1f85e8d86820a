"""Prompt -> embedding against the official Wan recipe run on transformers (tokenizer + UMT5EncoderModel)."""

import pytest
import torch
from text_fixtures import PROMPTS, official_clean, reference, spiece_bytes, model_dir  # noqa: F401 (fixtures)
from text_fixtures import check, tiny_hf

from wan.models.text.encoder import TextEncoder


@pytest.mark.filterwarnings("ignore:prompt is")
def test_encode_matches_official_recipe(spiece_bytes, reference):  # noqa: F811
    torch.manual_seed(2)
    hf = tiny_hf(vocab_size=400)
    sd = dict(hf.state_dict())
    sd["spiece_model"] = torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8)
    enc = TextEncoder.from_state_dict(sd, dtype=torch.float32)
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[4], PROMPTS[5]]
    emb, lengths = enc.encode(prompts)

    # Official: tokenize to 512 with the mask, run the encoder over all 512, keep u[:len], pad with zeros.
    tok = reference([official_clean(p) for p in prompts], padding="max_length", truncation=True,
                    max_length=512, add_special_tokens=True, return_tensors="pt")
    with torch.no_grad():
        hidden = hf(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
    ref_lengths = tok.attention_mask.sum(1)
    ref = torch.zeros_like(hidden)
    for i, n in enumerate(ref_lengths.tolist()):
        ref[i, :n] = hidden[i, :n]

    assert emb.shape == (4, 512, 64) and emb.dtype == torch.float32
    assert torch.equal(lengths, ref_lengths)
    assert (emb[1, 1:] == 0).all()
    check(emb, ref)
