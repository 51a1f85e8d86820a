"""Prompt -> UMT5 embedding, as the Wan DiT consumes it: [B, 512, 4096], padding rows zeroed."""

from __future__ import annotations

import torch

from ...errors import WanFileError
from .tokenizer import MAX_LEN, WanTokenizer, find_tokenizer
from .umt5 import UMT5Encoder, load_umt5


class TextEncoder:
    """UMT5 encoder + tokenizer; see :meth:`from_state_dict`."""

    def __init__(self, model: UMT5Encoder, tokenizer: WanTokenizer, max_len: int = MAX_LEN):
        self.model = model
        self.tokenizer = tokenizer
        self.max_len = max_len

    @classmethod
    def from_state_dict(
        cls,
        state_dict: dict,
        path=None,
        dtype: torch.dtype = torch.bfloat16,
        device="cpu",
        allow_download: bool = False,
    ) -> "TextEncoder":
        """Build from Wan-original or HF/ComfyUI weights; the tokenizer comes from the embedded
        ``spiece_model`` tensor, files beside ``path``, or (only if allowed) a download."""
        tokenizer = find_tokenizer(state_dict, path, allow_download)
        model = load_umt5(state_dict, path=path, dtype=dtype, device=device)
        rows = model.token_embedding.num_embeddings
        if tokenizer.vocab_size > rows:  # a piece past the table would fail inside encode, per prompt
            raise WanFileError(path, f"the tokenizer ({tokenizer.source}) has {tokenizer.vocab_size} pieces "
                               f"but the token embedding has only {rows} rows: the tokenizer is another "
                               "model's, or the file is damaged")
        return cls(model, tokenizer)

    @property
    def device(self) -> torch.device:
        return self.model.token_embedding.weight.device

    def tokenize(self, prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (ids [B, 512] int64, mask [B, 512] int64), on the CPU."""
        return self.tokenizer(prompts, self.max_len)

    @torch.no_grad()
    def encode(self, prompts, out_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts: list of str -> (embeddings [B, 512, dim] with padding zeroed, lengths [B] int64)."""
        ids, mask = self.tokenize(prompts)
        lengths = mask.sum(dim=1)
        # Keys past a prompt's end are masked and the position bias is relative, so running only up
        # to the longest prompt gives the same values as the official full-512 pass, for less work.
        longest = int(lengths.max())
        ids_d = ids[:, :longest].to(self.device)
        mask_d = mask[:, :longest].to(self.device)
        hidden = self.model(ids_d, mask_d)
        out = torch.zeros(ids.shape[0], self.max_len, hidden.shape[-1], dtype=out_dtype, device=self.device)
        out[:, :longest] = hidden.to(out_dtype).masked_fill(mask_d[..., None] == 0, 0)
        return out, lengths
