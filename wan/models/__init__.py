"""Model definitions: the DiT, the VAEs, UMT5 and CLIP vision."""
