"""Flow-matching schedules, samplers (in x0 form), guidance, context windows, and the Step that a
sampler hands down the denoiser chain."""
