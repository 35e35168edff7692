"""Layer helpers the heads share: masked means and softmax, regrouping a
flat sequence, zeroing padded steps, and an LSTM over the valid steps only."""
from __future__ import annotations

import torch
from torch import nn


def masked_mean(x, mask):
    """Mean over dim 1 of x (B, N, D) counting only positions where mask (B, N) is True."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_softmax(scores, mask, dim):
    """Softmax that gives padded positions (mask False) exactly zero weight."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask.to(scores.dtype)


def regroup(flat, flat_mask, lengths, lengths_mask):
    """Cut each item's flat sequence (B, P) into consecutive groups of the
    given lengths (B, N), e.g. a transcript's phoneme ids into words:
    (B, N, L) with L the longest group, and its mask (B, N, L). Padded
    groups count as empty; a step past the group's length or past the end
    of the item's flat steps is masked and zero."""
    lengths = torch.where(lengths_mask, lengths, torch.zeros_like(lengths))
    starts = torch.cumsum(lengths, 1) - lengths
    steps = torch.arange(max(int(lengths.max()) if lengths.numel() else 0, 1), device=flat.device)
    index = starts.unsqueeze(-1) + steps                                  # (B, N, L)
    b, n, length = index.shape
    inside = (steps < lengths.unsqueeze(-1)) & (index < flat.shape[1])
    flat_index = index.clamp(max=flat.shape[1] - 1).view(b, -1)
    mask = inside & torch.gather(flat_mask, 1, flat_index).view(b, n, length)
    values = torch.gather(flat, 1, flat_index).view(b, n, length)
    return values * mask.to(values.dtype), mask


def zero_pad(x, mask):
    """Set padded steps of x (B, N, D) to zero so convolutions cannot see them."""
    return x * mask.unsqueeze(-1).to(x.dtype)


def run_lstm(lstm: nn.LSTM, x, mask):
    """An LSTM over the valid steps only (packed), padded back to x's length.

    Packing keeps padded steps out of the recurrence in both directions, so
    their values never reach a valid step's output.
    """
    lengths = mask.sum(1).clamp_min(1).cpu()
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return zero_pad(out, mask)
