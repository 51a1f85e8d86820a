"""Memory and speed options applied to a loaded WanDiT from outside: block swap, torch.compile,
step caching, Enhance-A-Video and fp8 matrix multiplication. Nothing here edits the model's code:
load-time options wrap ``blocks`` or individual modules of an existing model; run-time ones (step
cache, Enhance-A-Video) wrap its forward for one run."""
