"""Band-limited resampling by a windowed-sinc polyphase filter.

The same filter as ``torchaudio.functional.resample`` with its defaults (Hann-windowed sinc, 6 zero
crossings each side, cutoff at 0.99 of the lower Nyquist rate), so that audio resampled here
matches what ComfyUI's audio encoders feed their models. torchaudio itself cannot be installed
beside our torch. The ratio is reduced by the rates' gcd: 44100 -> 16000 is 441 -> 160, one filter
phase per output sample of a period, applied as one strided convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import WanInputError

ZERO_CROSSINGS = 6
ROLLOFF = 0.99


def _kernel(up: int, down: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, int]:
    """Filter bank [up, 1, taps] for input rate ``down`` -> output rate ``up`` (both reduced) and
    the number of input samples the filter reaches before its centre."""
    cutoff = min(up, down) * ROLLOFF  # in units of the reduced rates
    reach = math.ceil(ZERO_CROSSINGS * down / cutoff)
    # input offsets (in input periods) of each tap, for each of the ``up`` output phases
    taps = torch.arange(-reach, reach + down, dtype=torch.float64, device=device) / down
    phase = -torch.arange(up, dtype=torch.float64, device=device)[:, None] / up
    x = ((taps[None] + phase) * cutoff).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = torch.cos(x * (math.pi / (2 * ZERO_CROSSINGS))) ** 2
    arg = x * math.pi
    sinc = torch.where(arg == 0, torch.ones_like(arg), torch.sin(arg) / torch.where(arg == 0, 1.0, arg))
    bank = sinc * window * (cutoff / down)
    return bank[:, None].to(dtype), reach


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """``waveform`` [..., samples] at ``orig_rate`` -> [..., ceil(samples * new / orig)] at ``new_rate``."""
    for name, rate in (("orig_rate", orig_rate), ("new_rate", new_rate)):
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            raise WanInputError(f"resample: {name} must be a positive integer, got {rate!r}")
    if orig_rate == new_rate:
        return waveform
    if not waveform.is_floating_point():
        raise WanInputError(f"resample: waveform must be float samples, got {waveform.dtype}")
    g = math.gcd(orig_rate, new_rate)
    down, up = orig_rate // g, new_rate // g
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    bank, reach = _kernel(up, down, waveform.dtype, waveform.device)
    padded = F.pad(flat, (reach, reach + down))
    out = F.conv1d(padded[:, None], bank, stride=down)  # [n, up, periods]
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    length = math.ceil(up * shape[-1] / down)
    return out[:, :length].reshape(*shape[:-1], length)
