"""Modality dropout: while training, some items lose one group of inputs.

A head's inputs fall into modality groups (`Head.modality_groups`), e.g.
"speech" and "text". `TrainConfig.modality_dropout` gives a share per group
("speech:0.15"). Each item draws u ~ U(0, 1); the shares are laid end to end
on [0, 1), so the group whose span holds u is lost and an item never loses
two. Losing a group sets its inputs to zero after standardisation: a feature
input then sits at its centre (the fold's or speaker's mean), an ids input at
the padding id. Masks stay as they are, so every head runs unchanged (no
attention over nothing). It keeps a model from leaning on the modality that
fits the training items most easily; no paper here uses it.
"""
from __future__ import annotations

import torch

from pipeline.stage import ConfigError


def parse_shares(entries, option="modality_dropout") -> dict:
    """{group: share} from entries "GROUP:SHARE"; ConfigError for a bad form,
    a repeated group, a share below 0 or shares that add up to 1 or more."""
    shares = {}
    for entry in entries:
        group, sep, value = str(entry).rpartition(":")
        try:
            share = float(value)
        except ValueError:
            share = None
        if not sep or not group or share is None:
            raise ConfigError(f"{option}: {entry!r} is not GROUP:SHARE (e.g. speech:0.15)")
        if group in shares:
            raise ConfigError(f"{option}: group {group!r} is given twice")
        if share < 0:
            raise ConfigError(f"{option}: the share of {group!r} must be >= 0 (not {share})")
        shares[group] = share
    if sum(shares.values()) >= 1:
        raise ConfigError(f"{option}: the shares add up to {sum(shares.values()):g}; they must stay below 1 "
                          "(an item loses at most one group)")
    return shares


def lost_groups(u, shares: dict) -> dict:
    """{group: (B,) bool} the items (with draws `u` (B,)) that lose each group:
    the group's span of the shares laid end to end on [0, 1)."""
    out, start = {}, 0.0
    for group, share in shares.items():
        out[group] = (u >= start) & (u < start + share)
        start += share
    return out


def drop_groups(batch: dict, groups: dict, shares: dict, generator=None) -> dict:
    """The batch with each item's lost group (if any) zeroed in every input of
    the group (`groups`: group -> input names; names absent from the batch are
    skipped). Masks and the other inputs are untouched; returns a new dict."""
    names = [n for g in shares for n in groups[g] if n in batch]
    if not names:
        return batch
    first = batch[names[0]]
    u = torch.rand(first.shape[0], device=first.device, generator=generator)
    out = dict(batch)
    for group, lost in lost_groups(u, shares).items():
        for name in groups[group]:
            if name in out:
                x = out[name]
                out[name] = torch.where(lost.view(-1, *[1] * (x.dim() - 1)), torch.zeros_like(x), x)
    return out
