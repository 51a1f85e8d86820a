"""UMT5 GGUF (llama.cpp names + tokenizer metadata): HF names and a rebuilt sentencepiece model.

References: a sentencepiece model trained here by sentencepiece's own trainer (its pieces written
into GGUF metadata with gguf.GGUFWriter) must tokenize every prompt exactly as the rebuilt one;
tensor names must be exactly those of transformers' UMT5EncoderModel.
"""

import io

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
spm = pytest.importorskip("sentencepiece")
transformers = pytest.importorskip("transformers")
from tiny_models import add_t5_tokenizer  # noqa: E402
from wan.errors import WanFileError  # noqa: E402
from wan.weights.gguf_text import gguf_text_encoder_state_dict  # noqa: E402

CORPUS = [
    "A cat walks on the grass, realistic style, golden hour lighting.",
    "Ein Hund läuft über die Wiese im Regen, Nahaufnahme.",
    "一只猫在草地上行走，电影感，高清。",
    "Two astronauts dance on the moon; slow motion, 4K, film grain!",
    "Le chat noir saute sur la table — photo réaliste.",
    "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ and   extra   spaces\tand tabs.",
] * 20
PROMPTS = [
    "A cat walks on the grass.",
    "  leading and   repeated spaces  ",
    "Ｆｕｌｌｗｉｄｔｈ letters ①②③ and ligatures ﬁ",
    "一只狗在雪地里奔跑",
    "unseen wörds ärger xyzzy 12345",
    "",
]


@pytest.fixture(scope="module")
def trained():
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=160, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        normalization_rule_name="nmt_nfkc", hard_vocab_limit=False, num_threads=1)
    return buf.getvalue()


def write_t5_gguf(path, proto_bytes, n_vocab, dim=64, layers=2, arch="t5encoder"):
    w = gguf.GGUFWriter(str(path), arch)
    add_t5_tokenizer(w, proto_bytes)
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    q8 = lambda *s: gguf.quants.quantize(f32(*s), gguf.GGMLQuantizationType.Q8_0)  # noqa: E731
    Q8 = gguf.GGMLQuantizationType.Q8_0
    w.add_tensor("token_embd.weight", q8(n_vocab, dim), raw_dtype=Q8)
    for i in range(layers):
        for n in ("attn_q", "attn_k", "attn_v", "attn_o"):
            w.add_tensor(f"enc.blk.{i}.{n}.weight", q8(dim, dim), raw_dtype=Q8)
        w.add_tensor(f"enc.blk.{i}.attn_rel_b.weight", f32(32, 2))  # [buckets, heads] as HF
        w.add_tensor(f"enc.blk.{i}.attn_norm.weight", f32(dim))
        w.add_tensor(f"enc.blk.{i}.ffn_gate.weight", q8(128, dim), raw_dtype=Q8)
        w.add_tensor(f"enc.blk.{i}.ffn_up.weight", q8(128, dim), raw_dtype=Q8)
        w.add_tensor(f"enc.blk.{i}.ffn_down.weight", q8(dim, 128), raw_dtype=Q8)
        w.add_tensor(f"enc.blk.{i}.ffn_norm.weight", f32(dim))
    w.add_tensor("enc.output_norm.weight", f32(dim))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return path


def test_tokenizer_rebuilt_from_metadata(tmp_path, trained):
    original = spm.SentencePieceProcessor(model_proto=trained)
    path = write_t5_gguf(tmp_path / "umt5.gguf", trained, original.get_piece_size())
    _, rebuilt_bytes = gguf_text_encoder_state_dict(path)
    rebuilt = spm.SentencePieceProcessor(model_proto=rebuilt_bytes)
    assert rebuilt.get_piece_size() == original.get_piece_size()
    assert (rebuilt.pad_id(), rebuilt.eos_id(), rebuilt.unk_id()) == (0, 1, 2)
    for prompt in PROMPTS + CORPUS[:6]:
        assert rebuilt.encode(prompt) == original.encode(prompt), prompt
        assert rebuilt.encode(prompt, out_type=str) == original.encode(prompt, out_type=str)


def test_names_match_transformers_umt5(tmp_path, trained):
    n_vocab = spm.SentencePieceProcessor(model_proto=trained).get_piece_size()
    path = write_t5_gguf(tmp_path / "umt5.gguf", trained, n_vocab)
    sd, spm_bytes = gguf_text_encoder_state_dict(path, dtype=torch.float32)
    cfg = transformers.UMT5Config(vocab_size=n_vocab, d_model=64, d_kv=32, num_heads=2, d_ff=128,
                                  num_layers=2, relative_attention_num_buckets=32,
                                  feed_forward_proj="gated-gelu")
    with torch.device("meta"):
        ref = transformers.UMT5EncoderModel(cfg)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in sd.items() if k != "spiece_model"}
    ref_shapes.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight in transformers
    assert ours == ref_shapes
    assert bytes(sd["spiece_model"].numpy()) == spm_bytes
    # dequantized values equal gguf-py's dequantization of the same bytes
    reader = gguf.GGUFReader(str(path))
    t = next(t for t in reader.tensors if t.name == "enc.blk.1.ffn_down.weight")
    ref_w = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy())
    assert torch.equal(sd["encoder.block.1.layer.1.DenseReluDense.wo.weight"], ref_w)
    packed, _ = gguf_text_encoder_state_dict(path, keep_packed=True)
    assert packed["encoder.block.0.layer.0.SelfAttention.q.weight"].is_packed
    assert not getattr(packed["shared.weight"], "is_packed", False)


def test_wan_file_is_not_a_text_encoder(tmp_path, trained):
    path = write_t5_gguf(tmp_path / "x.gguf", trained, 160, arch="llama")
    with pytest.raises(WanFileError, match="llama"):
        gguf_text_encoder_state_dict(path)
