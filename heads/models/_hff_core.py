"""HFF's core encoder (MODELS.md §3; papers/002 §3.2 (2) and §4.1).

The paper's level 2 is a multi-head attention over the level-1 fusion,
f2 = MultiHead(Q, K, V) + f1, with Q, K, V from the dynamically weighted
fusion f0 and the residual from the uncertainty-aware one f1. Its
configuration section makes that core a Transformer encoder of 4 layers,
8 heads, a feed-forward width of 4 x the model width, LayerNorm and dropout
0.1. We read the two together: the first layer is the paper's attention
(queries, keys and values from f0, residual f1), followed like every
encoder layer by LayerNorm and a feed-forward block; the other layers are
ordinary self-attention encoder layers over its output (post-norm, as the
original Transformer).
"""
from __future__ import annotations

from torch import nn


class CoreEncoder(nn.Module):
    """`layers` encoder layers of width d with `heads` heads and a
    feed-forward block of `ff_dim` (0: none, only with one layer)."""

    def __init__(self, d, heads, layers, ff_dim, dropout):
        super().__init__()
        self.attention = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.ff = None
        if ff_dim:
            self.ff = nn.Sequential(nn.Linear(d, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d),
                                    nn.Dropout(dropout))
            self.ff_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, ff_dim, dropout, batch_first=True)
                                    for _ in range(layers - 1))

    def forward(self, f0, f1):
        """(B, S, d) fusions -> (B, S, d)."""
        h = self.norm(f1 + self.attention(f0, f0, f0, need_weights=False)[0])
        if self.ff is not None:
            h = self.ff_norm(h + self.ff(h))
        for layer in self.layers:
            h = layer(h)
        return h

    def depth(self) -> int:
        return 1 + len(self.layers)
