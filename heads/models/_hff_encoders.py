"""HFF's modality encoders (heads/models/hff.py holds the head): the speech
CNN over mel planes, the text and visual encoders, step resampling and
attention pooling."""
from __future__ import annotations

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..layers import masked_mean, zero_pad


def _bins(mask, length, dtype):
    """(B, L, N) overlap of each item's valid step i (steps spread evenly
    over [0, 1)) with each of `length` equal bins, in units of a bin."""
    n = mask.sum(1).clamp_min(1).to(dtype)[:, None, None]               # (B, 1, 1)
    i = torch.arange(mask.shape[1], device=mask.device, dtype=dtype)[None, None, :]
    j = torch.arange(length, device=mask.device, dtype=dtype)[None, :, None]
    lo = torch.maximum(j / length, i / n)
    hi = torch.minimum((j + 1) / length, (i + 1) / n)
    return (hi - lo).clamp_min(0) * length * mask[:, None, :].to(dtype)


def resample_steps(x, mask, length):
    """(B, length, D): each item's valid steps (a prefix, mask True) spread
    evenly over [0, 1) and averaged into `length` equal bins, each step
    weighted by its overlap with the bin (longer sequences are averaged down,
    shorter ones repeated). Padded steps get no weight; an item without
    valid steps gives zeros."""
    return _bins(mask, length, x.dtype) @ zero_pad(x, mask)


def max_bins(x, mask, length):
    """(B, length, D): like `resample_steps`, but each bin is the max of the
    steps overlapping it (adaptive max-pooling onto the bins)."""
    member = _bins(mask, length, x.dtype) > 0                          # (B, L, N)
    out = x[:, None].masked_fill(~member[..., None], float("-inf")).amax(2)
    return out.masked_fill(~member.any(-1, keepdim=True), 0.0)


class AttentionPool(nn.Module):
    """f = sum_t beta_t h_t with beta = softmax_t(v . tanh(W h_t))."""

    def __init__(self, d):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))

    def forward(self, h):                                       # (B, S, d) -> (B, d)
        beta = torch.softmax(self.score(h).squeeze(-1), dim=1)
        return torch.einsum("bs,bsd->bd", beta, h)


# --- modality encoders -----------------------------------------------------------
# Built with (input width, config, steps wanted, vector wanted); called with
# (x, mask), they give (steps (B, N, d), their mask, utterance vector (B, d)).
# Only parts that are wanted need parameters of their own.

def check_planes(config, width):
    """The 2-D speech CNN needs the input steps to be whole planes (with a
    frame track, the MFCCs and the track's features joined)."""
    if config.speech_conv == "2d" and width % config.speech_planes:
        track = (f" (the MFCC frames joined with frame_track={config.frame_track}; use speech_conv=1d)"
                 if config.frame_track else "")
        raise ConfigError(f"head hff: speech input width {width}{track} is not {config.speech_planes} planes "
                          f"(speech_planes) of equal width")


class SpeechEncoder(nn.Module):
    """The speech CNN: conv + ReLU + max-pool by 2 per layer (`speech_conv`
    1d: MFCCs as channels, kernels over time; 2d: the planes of the MFCC
    matrix as channels, kernels and pooling over time and coefficient); one
    linear layer maps each pooled step, and the max over steps, to d."""

    def __init__(self, d_in, config, steps, vector):
        super().__init__()
        self.resample = max_bins if config.speech_bins == "max" else resample_steps
        self.planes = config.speech_planes if config.speech_conv == "2d" else None
        k = config.speech_kernel
        if self.planes is None:
            widths, conv, out = (d_in, *config.speech_channels), nn.Conv1d, config.speech_channels[-1]
        else:
            check_planes(config, d_in)
            widths, conv = (self.planes, *config.speech_channels), nn.Conv2d
            coefficients = d_in // self.planes
            for _ in config.speech_channels:
                coefficients = -(-coefficients // 2)
            out = config.speech_channels[-1] * coefficients
        self.convs = nn.ModuleList(conv(a, b, k, padding=k // 2) for a, b in zip(widths, widths[1:]))
        self.pool = nn.functional.max_pool1d if self.planes is None else nn.functional.max_pool2d
        self.fc = nn.Linear(out, config.d)

    def forward(self, x, mask):
        h = x.transpose(1, 2)                                                   # (B, D, T)
        if self.planes is not None:
            h = h.unflatten(1, (self.planes, -1)).transpose(2, 3)              # (B, P, T, C)
        h, out_mask = conv_stack(h, mask, self.convs, self.pool)
        x = h.transpose(1, 2).flatten(2)                                         # (B, T', width)
        return self.fc(x), out_mask, self.fc(zero_pad(x, out_mask).max(1).values)


def conv_stack(h, mask, convs, pool):
    """conv + ReLU + pool by 2 per layer over (B, C, T[, F]) with a step mask
    (B, T); returns the output and its mask. Padded steps are zeroed before
    every conv and pool; after the ReLU a zero never wins over a valid step,
    so an item pools the same alone or padded."""
    for conv in convs:
        m = mask.view(*mask.shape[:1], 1, mask.shape[1], *(1,) * (h.dim() - 3)).to(h.dtype)
        h = pool(torch.relu(conv(h * m)) * m, 2, ceil_mode=True)
        mask = nn.functional.max_pool1d(mask[:, None, :].to(h.dtype), 2, ceil_mode=True)[:, 0] > 0
    return h, mask


class TextEncoder(nn.Module):
    """Token states mapped to d per token; the vector from [CLS; token mean]."""
    resample = staticmethod(resample_steps)

    def __init__(self, d_in, config, steps, vector):
        super().__init__()
        self.steps = nn.Linear(d_in, config.d) if steps else None
        self.vector = nn.Linear(2 * d_in, config.d) if vector else None

    def forward(self, x, mask):
        vec = None if self.vector is None else self.vector(torch.cat([x[:, 0], masked_mean(x, mask)], -1))
        return (x if self.steps is None else self.steps(x)), mask, vec


class VisualEncoder(nn.Module):
    """Frame embeddings mapped to d; the vector is their masked mean."""
    resample = staticmethod(resample_steps)

    def __init__(self, d_in, config, steps, vector):
        super().__init__()
        self.proj = nn.Linear(d_in, config.d)

    def forward(self, x, mask):
        steps = self.proj(x)
        return steps, mask, masked_mean(steps, mask)


ENCODERS = {"speech": SpeechEncoder, "text": TextEncoder, "visual": VisualEncoder}
