"""The networks of HarmoFusion and MUSE (heads/models/multilevel.py holds the
heads, their configurations and losses): the fine-grained multilevel
transformer with its phoneme CNN, prenets, cross-modal layers and highway
fusion, the multigranular gate, and the attention-alignment target."""
from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.stage import ConfigError

from ..data import stage_rate
from ..layers import regroup, zero_pad


class Gate(nn.Module):
    """a = sigmoid(W [c; f] + b) per feature; out = a*c + (1 - a)*f."""

    def __init__(self, d):
        super().__init__()
        self.linear = nn.Linear(2 * d, d)

    def forward(self, c, f):
        a = torch.sigmoid(self.linear(torch.cat([c, f], -1)))
        return a * c + (1 - a) * f


class Highway(nn.Module):
    """z = H(u)*T(u) + u*(1 - T(u)), H = ReLU(W_H u + b_H), T = sigmoid(W_T u + b_T)."""

    def __init__(self, d):
        super().__init__()
        self.h = nn.Linear(d, d)
        self.t = nn.Linear(d, d)

    def forward(self, u):
        t = torch.sigmoid(self.t(u))
        return torch.relu(self.h(u)) * t + u * (1 - t)


class PhonemeCNN(nn.Module):
    """One vector per word: embedded phoneme ids, a Conv1d over the word's
    phonemes (ReLU) and a max over its real phonemes (0 for a word with none)."""

    def __init__(self, vocab, dim, kernel):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)

    def forward(self, ids, mask):
        """ids, mask (B, N, L) -> (B, N, dim)."""
        b, n, length = ids.shape
        ids = ids * mask
        if ids.numel() and int(ids.max()) >= self.vocab:
            raise ValueError(f"phoneme id {int(ids.max())} >= phoneme_vocab={self.vocab}; "
                             "raise phoneme_vocab to the phonemes stage's inventory size")
        m = mask.view(b * n, length)
        x = zero_pad(self.embed(ids.view(b * n, length)), m)
        h = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        h = h.masked_fill(~m.unsqueeze(-1), float("-inf")).max(1).values
        h = torch.where(m.any(1, keepdim=True), h, torch.zeros_like(h))
        return h.view(b, n, -1)


class EncoderPrenet(nn.Module):
    """3 Conv1d layers (ReLU, dropout) and a linear projection to d; padded
    steps are zeroed before every convolution so they reach no real step."""

    def __init__(self, d_in, d, kernel, dropout, n_layers=3):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(d_in if i == 0 else d, d, kernel, padding=kernel // 2)
                                   for i in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d, d)

    def forward(self, x, mask):
        for conv in self.convs:
            x = self.dropout(torch.relu(conv(zero_pad(x, mask).transpose(1, 2)).transpose(1, 2)))
        return zero_pad(self.proj(x), mask)


class CrossModalLayer(nn.Module):
    """Self-attention over the mel steps, then attention with the mel steps
    as queries over the text encodings, then a feed-forward block (each with
    a residual and layer norm). Also returns the mel-to-text attention
    weights (B, T, N), averaged over heads."""

    def __init__(self, d, heads, ff_dim, dropout, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        # No attention dropout: the weights stay a distribution (alignment loss).
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, m, m_mask, t, t_mask):
        found = {}

        def self_block(x):
            return self.self_attn(x, x, x, key_padding_mask=~m_mask, need_weights=False)[0]

        def cross_block(x):
            out, found["weights"] = self.cross_attn(x, t, t, key_padding_mask=~t_mask, need_weights=True)
            return out

        for norm, block in zip(self.norms, (self_block, cross_block, self.ff)):
            if self.norm_first:             # pre-norm: the residual stream is never normalised
                m = m + self.dropout(block(norm(m)))
            else:
                m = norm(m + self.dropout(block(m)))
        return m, found["weights"]


def sinusoids(n, d, device=None):
    """(n, d) sinusoidal position encodings (sin on even, cos on odd features)."""
    pos = torch.arange(n, dtype=torch.float32, device=device).unsqueeze(1)
    rates = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d))
    out = torch.zeros(n, d, device=device)
    out[:, 0::2] = torch.sin(pos * rates)
    out[:, 1::2] = torch.cos(pos * rates)[:, :d // 2]
    return out


def _encoder_layers(c, n):
    return nn.ModuleList(nn.TransformerEncoderLayer(c.d, c.heads, c.ff_dim, c.dropout, batch_first=True,
                                                    norm_first=c.norm_first) for _ in range(n))


class MultilevelTransformer(nn.Module):
    """The fine-grained branch: batch -> utterance vector (B, d) from the
    dummy position; auxiliary loss terms go into the dict it is given."""

    def __init__(self, c, dims):
        super().__init__()
        self.config = c
        self.use_phonemes = c.fusion != "word"
        self.use_words = c.fusion != "phoneme"
        width = 0
        if self.use_phonemes:
            self.phonemes = PhonemeCNN(c.phoneme_vocab, c.phoneme_dim, c.phoneme_kernel)
            width += c.phoneme_dim
        if self.use_words:
            width += dims["words"]
        n_highway = c.highway_layers if c.fusion == "highway" else 0
        self.highway = nn.ModuleList(Highway(width) for _ in range(n_highway))
        self.prenet = EncoderPrenet(width, c.d, c.prenet_kernel, c.dropout)
        self.text_encoder = _encoder_layers(c, c.text_layers)
        # The speech input arrives as the data layer gives it: pooled, with any frame track joined.
        frame_width = dims["speech"]
        self.dummy = nn.Parameter(0.02 * torch.randn(frame_width))
        self.mel_prenet = nn.Sequential(nn.Linear(frame_width, c.mel_hidden), nn.ReLU(), nn.Dropout(c.dropout),
                                        nn.Linear(c.mel_hidden, c.d), nn.ReLU(), nn.Dropout(c.dropout))
        self.cross = nn.ModuleList(CrossModalLayer(c.d, c.heads, c.ff_dim, c.dropout, c.norm_first)
                                   for _ in range(c.cross_layers))
        self.fusion = _encoder_layers(c, c.fusion_layers)
        self.dropout = nn.Dropout(c.dropout)
        self.hop_s = frame_seconds(c) if c.align_weight > 0 else None

    def forward(self, batch, aux):
        c = self.config
        t, t_mask = self.encode_text(batch)
        speech, s_mask = batch["speech"], batch["speech_mask"]
        b = speech.shape[0]
        m = torch.cat([self.dummy.expand(b, 1, -1), speech], 1)
        m_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=m.device), s_mask], 1)
        m = self.dropout(self.mel_prenet(m) + sinusoids(m.shape[1], c.d, m.device))
        for layer in self.cross:
            m, weights = layer(m, m_mask, t, t_mask)
        outputs = [m]
        for layer in self.fusion:
            m = layer(m, src_key_padding_mask=~m_mask)
            outputs.append(m)
        if c.consistency_weight > 0 and c.fusion_layers > 0:    # no deep fusion (ablation): no term
            gap = (outputs[-1] - outputs[-2]).pow(2).sum(-1)
            aux["consistency"] = c.consistency_weight * gap[m_mask].mean()
        if c.align_weight > 0:
            target, frames = alignment_target(batch["spans"], batch["spans_mask"], t_mask, m.shape[1],
                                              self.hop_s, c.frame_pool, c.align_epsilon)
            aux["alignment"] = c.align_weight * alignment_kl(weights, target, frames & m_mask)
        return m[:, 0]

    def encode_text(self, batch):
        """Text encodings (B, N, d) and the word mask; an item with no word
        keeps one zero word so its attention stays defined."""
        x, mask = self.word_inputs(batch)
        for layer in self.highway:
            x = layer(x)
        t = self.prenet(x, mask)
        t = self.dropout(t + sinusoids(t.shape[1], self.config.d, t.device))
        keys = mask.clone()
        keys[:, 0] |= ~mask.any(1)
        t = torch.where(keys.unsqueeze(-1), t, torch.zeros_like(t))
        for layer in self.text_encoder:
            t = layer(t, src_key_padding_mask=~keys)
        return t, keys

    def word_inputs(self, batch):
        """Per word: phoneme vector and/or word vector (concatenated), and the
        word mask. Both come from the same words stage; where both are read,
        a word counts only when both have it."""
        parts, masks = [], []
        if self.use_phonemes:
            lengths, l_mask = batch["phoneme_lengths"].squeeze(-1), batch["phoneme_lengths_mask"]
            ids, id_mask = regroup(batch["phoneme_ids"].squeeze(-1), batch["phoneme_ids_mask"], lengths, l_mask)
            parts.append(self.phonemes(ids, id_mask))
            masks.append(l_mask)
        if self.use_words:
            parts.append(batch["words"])
            masks.append(batch["words_mask"])
        n = min(p.shape[1] for p in parts)
        mask = masks[0][:, :n]
        for other in masks[1:]:
            mask = mask & other[:, :n]
        return zero_pad(torch.cat([p[:, :n] for p in parts], -1), mask), mask


def frame_seconds(config) -> float:
    """Seconds between frames of the speech stage (its frame rate), for the
    alignment target (which also counts `frame_pool` stage frames to a step
    of the speech input); ConfigError when the stage has no frame rate."""
    rate = stage_rate(config.speech_stage)
    if not rate:
        raise ConfigError(f"align_weight needs a speech stage with a frame rate; {config.speech_stage} has none")
    return 1.0 / rate


def alignment_target(spans, spans_mask, word_mask, n_steps, hop_s, pool, epsilon):
    """(target (B, n_steps, N), frames (B, n_steps)) for the dummy-prefixed
    mel steps: a step's target is one-hot on the word whose [start, end)
    holds the step's time, smoothed by epsilon over the item's words;
    `frames` marks the steps inside a word (never the dummy at 0)."""
    n_words = word_mask.shape[1]
    spans = spans[:, :n_words]
    spans_mask = spans_mask[:, :n_words]
    if spans.shape[1] < n_words:            # fewer spans than words: the rest untimed
        pad = n_words - spans.shape[1]
        spans = nn.functional.pad(spans, (0, 0, 0, pad), value=float("nan"))
        spans_mask = nn.functional.pad(spans_mask, (0, pad), value=False)
    # Step j >= 1 holds frames (j-1)*pool .. j*pool-1 (frame i at i*hop_s): its time is their middle.
    times = ((torch.arange(n_steps, device=spans.device) - 1) * pool + (pool - 1) / 2) * hop_s
    start, end = spans[..., 0].unsqueeze(1), spans[..., 1].unsqueeze(1)           # (B, 1, N)
    valid = (word_mask & spans_mask).unsqueeze(1)
    inside = valid & (times.view(1, -1, 1) >= start) & (times.view(1, -1, 1) < end)   # nan compares False
    first = inside & (inside.cumsum(-1) == 1)     # overlapping spans: the earlier word
    counts = word_mask.sum(1, keepdim=True).clamp_min(1).unsqueeze(-1).to(spans.dtype)
    target = (1 - epsilon) * first.to(spans.dtype) + epsilon * word_mask.unsqueeze(1).to(spans.dtype) / counts
    frames = first.any(-1)
    frames[:, 0] = False
    return target, frames


def alignment_kl(weights, target, frames):
    """Mean over the marked steps of KL(target || weights) over the words."""
    if not frames.any():
        return weights.new_zeros(())
    t = target[frames]
    w = weights[frames].clamp_min(1e-8)
    kl = torch.where(t > 0, t * (t.clamp_min(1e-12).log() - w.log()), torch.zeros_like(t)).sum(-1)
    return kl.mean()
