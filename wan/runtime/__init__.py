"""Memory and speed options applied to a loaded WanDiT from outside: block swap, torch.compile,
step caching, Enhance-A-Video and fp8 matrix multiplication. Nothing here edits the model's code;
each option wraps ``blocks``, ``embed`` or individual modules of an existing model."""
