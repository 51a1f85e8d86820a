"""UMT5 tokenization against transformers' T5 tokenizer built from the same sentencepiece model."""

import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from wan.errors import WanFileError
from wan.models.text.tokenizer import WanTokenizer, find_tokenizer

from text_fixtures import PROMPTS, model_dir, official_clean, reference, spiece_bytes  # noqa: F401 (fixtures)


def test_matches_transformers(spiece_bytes, reference):
    ours = WanTokenizer.from_spiece_bytes(spiece_bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, mask = ours(PROMPTS)
    ref = reference([official_clean(p) for p in PROMPTS], padding="max_length", truncation=True,
                    max_length=512, add_special_tokens=True, return_tensors="pt")
    assert ids.shape == mask.shape == (len(PROMPTS), 512)
    assert torch.equal(ids, ref.input_ids)
    assert torch.equal(mask, ref.attention_mask)
    # The long prompt is cut to 511 pieces + EOS, and said so once.
    assert int(mask[-1].sum()) == 512 and int(ids[-1, -1]) == 1
    assert len([w for w in caught if "tokens long" in str(w.message)]) == 1
    assert int(mask[1].sum()) == 1 and int(ids[1, 0]) == 1  # empty prompt: EOS only


def test_tokenizer_json_matches(reference, model_dir, spiece_bytes, tmp_path):
    reference.save_pretrained(str(tmp_path))
    from_json = WanTokenizer.from_file(tmp_path / "tokenizer.json")
    from_model = WanTokenizer.from_file(model_dir / "spiece.model")
    prompts = PROMPTS[:-1]
    for a, b in zip(from_json(prompts), from_model(prompts)):
        assert torch.equal(a, b)


def test_embedded_tensor_in_safetensors(spiece_bytes, model_dir, tmp_path):
    """ComfyUI stores the model as a uint8 tensor named spiece_model beside the weights."""
    f = tmp_path / "umt5_tiny.safetensors"
    save_file({"spiece_model": torch.frombuffer(bytearray(spiece_bytes), dtype=torch.uint8),
               "shared.weight": torch.zeros(4, 2)}, str(f))
    sd = load_file(str(f))
    tok = find_tokenizer(sd, path=f)
    assert tok.source == "spiece_model tensor"
    ref = WanTokenizer.from_file(model_dir / "spiece.model")
    for a, b in zip(tok(PROMPTS[:-1]), ref(PROMPTS[:-1])):
        assert torch.equal(a, b)


def test_side_file_and_clear_error(model_dir, tmp_path):
    tok = find_tokenizer({}, path=model_dir / "umt5-xxl-enc-bf16.safetensors")
    assert tok.source.endswith("spiece.model")
    with pytest.raises(WanFileError) as err:
        find_tokenizer({}, path=tmp_path / "umt5.safetensors", allow_download=False)
    msg = str(err.value)
    assert "spiece_model" in msg and "spiece.model" in msg and "tokenizer.json" in msg and "not allowed" in msg
    bad = tmp_path / "spiece.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(WanFileError, match="sentencepiece"):
        WanTokenizer.from_file(bad)


def test_from_vocab_rebuilds_the_model(spiece_bytes):
    """GGUF text encoders store pieces/scores/types/charsmap; rebuilt, they tokenize as the original."""
    pytest.importorskip("google.protobuf", reason="reading the reference ModelProto needs protobuf")
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(spiece_bytes)
    pieces = [p.piece for p in proto.pieces]
    scores = [p.score for p in proto.pieces]
    types = [p.type for p in proto.pieces]
    ours = WanTokenizer.from_vocab(pieces, scores, types, proto.normalizer_spec.precompiled_charsmap)
    assert (ours.eos_id, ours.pad_id, ours.vocab_size) == (1, 0, 400)
    ref = spm.SentencePieceProcessor(model_proto=spiece_bytes)
    for prompt in PROMPTS:
        text = official_clean(prompt)
        assert ours.encode(prompt, max_len=10**6) == ref.encode(text) + [1], prompt
