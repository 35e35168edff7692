"""Hidden states of a self-supervised speech encoder, per layer.

Any local Hugging Face speech encoder with its feature extractor: wav2vec
2.0, HuBERT, WavLM, data2vec-audio (one convolutional front end and a
transformer, run through AutoModel), and Whisper's encoder (through
WhisperModel's encoder). The model is a folder or an id in the local HF
cache (pipeline/models.py); none ships with the project, so `model` must be
given. It enters the cache key by the digest of its files.

Audio is read at the feature extractor's rate (16 kHz) and prepared by the
feature extractor itself: zero mean and unit variance over the whole item
where it says so (before any cutting, so chunks share the item's
statistics), or Whisper's log-mel input per piece of at most 30 s. Items longer than `max_seconds` are cut into
chunks that overlap by `overlap_seconds` and start on a multiple of the
front end's total stride, so every chunk's convolutional frames are frames
of the single pass; each frame is taken from the chunk in which it lies
farthest from an edge. (Models whose first convolution is followed by a
group norm over time — wav2vec2-base, HuBERT-base, WavLM-Base+ — normalise
each chunk on its own statistics; docs/ssl.md gives the measured effect.)

Pieces (items or chunks) are sorted by length and batched up to
`batch_seconds` of padded audio. Padding is exact only when the front end
has no norm across time and the model takes an attention mask
(feat_extract_norm = "layer"); other models batch only pieces of equal
length, so every result equals a direct call on that piece alone.

Arrays per item (L = number of chosen layers, D = hidden size):
  frames  (T, L, D), or (T, D) for one layer: 50 Hz, frame k at the centre
          of its receptive field (pool = none)
  pooled  (L, D) mean over frames, or (L, 2D) mean and std (pool = mean,
          mean+std); (D,) / (2D,) for one layer
  layers  (L,) the hidden-state indices stored (0 = the transformer's input)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..models import find_model, model_config, model_digest
from ..stage import ConfigError, ItemError, Result, Seq, Stage, Vec, catch_item_error
from ..registry import Registry
from . import STAGES

WHO = "ssl"
ENCODERS = Registry("speech encoder family")


@dataclass(frozen=True)
class Config:
    model: str = ""                       # a folder or a Hugging Face id in the local cache (required)
    layers: tuple[str, ...] = ("all",)    # hidden-state indices (0 .. num_hidden_layers, or negative), or all
    pool: Literal["none", "mean", "mean+std"] = "none"
    dtype: Literal["float32", "float16"] = "float32"   # stored precision
    max_seconds: float = 30.0             # longer items are cut into overlapping chunks
    overlap_seconds: float = 4.0
    batch_seconds: float = 160.0          # padded audio per forward pass
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 1                      # torch CPU threads per worker (0: torch's default)


@STAGES.register()
class SSL(Stage):
    name = "ssl"
    version = "1"
    Config = Config
    reads = ("audio",)
    batched = True
    gpu = True
    # A task holds its items' states until its shard is written: 16 IEMOCAP utterances of
    # 13 x 768 frames are ~150 MB in float32. For long items (whole videos) lower it (--batch).
    batch_items = 16
    gpu_batch_items = 64         # on a GPU worker: fuller forward passes (~600 MB of host memory per task)
    # `model` names where the model is; the key holds what it is (identity: its files' digest),
    # so an id and a folder of the same files, or a moved folder, share outputs.
    location_options = ("model",)
    runtime_options = ("batch_seconds", "device", "threads")

    def validate(self):
        cfg = self.config
        if not cfg.model:
            raise ConfigError("ssl: no model given. No model ships with emocache: give a speech encoder "
                              "with --set ssl.model=ID_OR_FOLDER, e.g. --set ssl.model=microsoft/wavlm-base-plus "
                              "(a Hugging Face id found in the local HF cache, or a folder with config.json, "
                              "weights and preprocessor_config.json); see docs/ssl.md")
        family = self.family()
        if cfg.overlap_seconds < 0.1 or cfg.max_seconds < 3 * cfg.overlap_seconds:
            raise ConfigError("ssl: overlap_seconds must be >= 0.1 and max_seconds at least 3x overlap_seconds")
        if cfg.max_seconds > family.max_seconds:
            raise ConfigError(f"ssl: max_seconds={cfg.max_seconds} is more than {cfg.model!r} takes "
                              f"({family.max_seconds} s)")
        if cfg.batch_seconds <= 0 or cfg.threads < 0:
            raise ConfigError("ssl: batch_seconds must be > 0 and threads >= 0")
        self.layer_indices()
        model_digest(cfg.model, WHO)        # unreadable weights fail here, before any work

    def family(self):
        mc = model_config(self.config.model, WHO)
        return ENCODERS.get(mc.get("model_type"), ENCODERS["default"])

    def n_states(self) -> int:
        mc = model_config(self.config.model, WHO)
        return self.family().n_layers(mc) + 1

    def layer_indices(self) -> list:
        n = self.n_states()
        raw = self.config.layers
        if raw == ("all",):
            return list(range(n))
        try:
            chosen = [int(x) for x in raw]
        except ValueError:
            raise ConfigError(f"ssl: layers={list(raw)} must be `all` or a list of integers") from None
        bad = [i for i in chosen if not -n <= i < n]
        if not chosen or bad:
            raise ConfigError(f"ssl: layers {bad or '[]'} out of range for {self.config.model!r} "
                              f"({n} hidden states: 0 .. {n - 1}, or negative)")
        return [i % n for i in chosen]

    def identity(self):
        return {"model_digest": model_digest(self.config.model, WHO)}

    @property
    def rate(self):
        return self.family().rate(model_config(self.config.model, WHO))

    def shard_attrs(self):
        mc = model_config(self.config.model, WHO)
        return {"model": self.config.model, "model_type": mc.get("model_type"),
                "hidden_size": self.family().width(mc), "layers": self.layer_indices(),
                "pool": self.config.pool, "rate": self.rate}

    def setup(self):
        import torch
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        return self.family()(find_model(cfg.model, WHO), device)

    # --- per task ----------------------------------------------------------
    def compute_batch(self, ctxs):
        enc = self.resources
        waves = [catch_item_error(self._audio, ctx, enc) for ctx in ctxs]
        pieces = []          # (item index, chunk plan entry, samples)
        plans = {}
        for i, y in enumerate(waves):
            if isinstance(y, Exception):
                continue
            y = enc.prepare(y)        # normalised over the whole item, before it is cut
            plans[i] = chunk_plan(len(y), enc.sample_rate, self.config, enc.stride, enc.n_frames)
            pieces += [(i, c, y[c.start:c.stop]) for c in plans[i]]
        states = self._run(pieces, enc)
        out = list(waves)
        for i in plans:
            parts = [states[j] for j, p in enumerate(pieces) if p[0] == i]
            out[i] = catch_item_error(self._result, plans[i], parts, len(waves[i]), enc)
        return out

    def _audio(self, ctx, enc):
        y = ctx.audio(enc.sample_rate)
        if len(y) < enc.field:
            raise ItemError(f"audio of {len(y)} samples is shorter than the model's receptive field "
                            f"({enc.field} samples at {enc.sample_rate} Hz)")
        return y

    def _run(self, pieces, enc):
        """Chosen layers of every piece, (frames, L, D) float32, in piece order."""
        layers = self.layer_indices()
        out = [None] * len(pieces)
        for batch in length_batches([len(p[2]) for p in pieces], self.config.batch_seconds * enc.sample_rate,
                                    enc.pads_exactly):
            hidden = enc.forward([pieces[j][2] for j in batch], layers)
            for b, j in enumerate(batch):
                out[j] = hidden[b, :enc.n_frames(len(pieces[j][2]))]
        return out

    def _result(self, plan, parts, n_samples, enc):
        import numpy as np
        frames = np.concatenate([part[c.keep_from:c.keep_to] for c, part in zip(plan, parts)])
        layers = self.layer_indices()
        dt = np.dtype(self.config.dtype)
        arrays = {"layers": Vec(np.asarray(layers, dtype=np.int32))}
        one = frames[:, 0] if len(layers) == 1 else frames
        if self.config.pool == "none":
            arrays["frames"] = Seq(one.astype(dt), rate=enc.sample_rate / enc.stride, offset=enc.offset)
        else:
            parts_ = [one.mean(axis=0)] + ([one.std(axis=0)] if self.config.pool == "mean+std" else [])
            arrays["pooled"] = Vec(np.concatenate(parts_, axis=-1).astype(dt))
        meta = {"frames": int(len(frames)), "chunks": len(plan), "seconds": n_samples / enc.sample_rate}
        return Result(arrays, meta)


# --- chunks and batches ------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    start: int          # sample span of the chunk in the item
    stop: int
    keep_from: int      # the chunk's own frames that go into the item's sequence
    keep_to: int


def chunk_plan(n, sr, cfg, stride, n_frames) -> list:
    """Overlapping chunks of an n-sample item: each starts on a multiple of
    `stride` (so its frame k is frame start/stride + k of the single pass),
    and the frames of an overlap are split at its middle."""
    size = max(stride, int(cfg.max_seconds * sr) // stride * stride)
    if n <= size:
        return [Chunk(0, n, 0, n_frames(n))]
    step = size - max(stride, int(cfg.overlap_seconds * sr) // stride * stride)
    starts = [k * step for k in range(-(-(n - size) // step) + 1)]   # the last one reaches the end
    ends = [min(s + size, n) for s in starts]
    firsts = [s // stride for s in starts]
    lasts = [f + n_frames(e - s) for f, s, e in zip(firsts, starts, ends)]   # global frame after the chunk's last
    cuts = [0] + [(lasts[k] + firsts[k + 1]) // 2 for k in range(len(starts) - 1)] + [lasts[-1]]
    return [Chunk(s, e, cuts[k] - firsts[k], cuts[k + 1] - firsts[k])
            for k, (s, e) in enumerate(zip(starts, ends))]


def length_batches(lengths, budget, pad_ok) -> list:
    """Indices grouped into forward passes: sorted by length, at most `budget`
    padded samples each (always at least one piece); without exact padding,
    only pieces of equal length share a pass."""
    order = sorted(range(len(lengths)), key=lambda j: lengths[j])
    batches, current = [], []
    for j in order:
        longest = lengths[j]
        fits = current and (len(current) + 1) * longest <= budget and (pad_ok or lengths[current[0]] == longest)
        if current and not fits:
            batches.append(current)
            current = []
        current.append(j)
    return batches + ([current] if current else [])


# --- model families ----------------------------------------------------------

@ENCODERS.register("default")
class ConvTransformer:
    """wav2vec 2.0, HuBERT, WavLM, data2vec-audio: a strided CNN on the
    waveform, then a transformer; hidden_states[0] is the transformer's input."""
    max_seconds = 3600.0
    # When the config does not say (data2vec-audio): its positional convolutions
    # layer-normalise padded frames into the valid ones, so padding is not exact.
    cnn_norm = "group"

    @staticmethod
    def n_layers(mc):
        return mc.get("num_hidden_layers", 0)

    @staticmethod
    def width(mc):
        return mc.get("hidden_size")

    @staticmethod
    def rate(mc):
        # Every model of these families reads 16 kHz audio (their feature extractors say so).
        return 16000 / math.prod(mc.get("conv_stride", (5, 2, 2, 2, 2, 2, 2)))

    def __init__(self, path, device):
        import torch
        from transformers import AutoFeatureExtractor, AutoModel
        self.torch, self.device = torch, torch.device(device)
        self.fe = _feature_extractor(AutoFeatureExtractor, path)
        self.net = AutoModel.from_pretrained(path).to(self.device).eval()
        cfg = self.net.config
        self.sample_rate = self.fe.sampling_rate
        self.kernels, self.strides = list(cfg.conv_kernel), list(cfg.conv_stride)
        self.stride = math.prod(self.strides)
        self.field = 1 + sum((k - 1) * math.prod(self.strides[:i]) for i, k in enumerate(self.kernels))
        self.offset = (self.field / 2) / self.sample_rate
        # Padding is harmless only without a norm across time in the CNN, and with a mask the model uses.
        self.pads_exactly = getattr(cfg, "feat_extract_norm", self.cnn_norm) == "layer" and self.fe.return_attention_mask

    def n_frames(self, n):
        for k, s in zip(self.kernels, self.strides):
            n = (n - k) // s + 1
        return max(n, 0)

    def prepare(self, y):
        """The model's input for a whole item, as its feature extractor makes it
        (zero mean and unit variance over the item where do_normalize says so)."""
        return self.fe(y, sampling_rate=self.sample_rate, return_tensors="np")["input_values"][0]

    def forward(self, waves, layers):
        """(B, frames, L, D) float32 numpy of the chosen hidden states of
        prepared pieces, padded with the feature extractor's padding value."""
        import numpy as np
        torch = self.torch
        x = np.full((len(waves), max(len(w) for w in waves)), self.fe.padding_value, dtype=np.float32)
        mask = np.zeros(x.shape, dtype=np.int64)
        for b, w in enumerate(waves):
            x[b, :len(w)] = w
            mask[b, :len(w)] = 1
        mask = torch.from_numpy(mask).to(self.device) if self.pads_exactly else None
        with torch.inference_mode():
            hidden = self.net(torch.from_numpy(x).to(self.device), attention_mask=mask,
                              output_hidden_states=True).hidden_states
            return torch.stack([hidden[i] for i in layers], dim=2).float().cpu().numpy()


@ENCODERS.register("whisper")
class WhisperEncoder(ConvTransformer):
    """Whisper's encoder: log-mel input padded to 30 s, two convolutions
    (the second of stride 2), 50 Hz states centred on their mel frame."""
    max_seconds = 30.0

    @staticmethod
    def n_layers(mc):
        return mc.get("encoder_layers", 0)

    @staticmethod
    def width(mc):
        return mc.get("d_model")

    @staticmethod
    def rate(mc):
        return 50.0

    def __init__(self, path, device):
        import torch
        from transformers import AutoFeatureExtractor, WhisperModel
        self.torch, self.device = torch, torch.device(device)
        self.fe = _feature_extractor(AutoFeatureExtractor, path)
        self.net = WhisperModel.from_pretrained(path).get_encoder().to(self.device).eval()
        self.sample_rate = self.fe.sampling_rate
        self.stride = 2 * self.fe.hop_length
        self.field = self.fe.n_fft
        self.offset = 0.0
        self.pads_exactly = True       # every input is padded to 30 s anyway

    def n_frames(self, n):
        return min(math.ceil(n / self.stride), self.fe.nb_max_frames // 2)

    def prepare(self, y):
        return y        # the log-mel input is made per piece (at most 30 s: what the encoder sees)

    def forward(self, waves, layers):
        torch = self.torch
        feats = self.fe(waves, sampling_rate=self.sample_rate, return_tensors="pt")["input_features"]
        with torch.inference_mode():
            hidden = self.net(feats.to(self.device), output_hidden_states=True).hidden_states
            return torch.stack([hidden[i] for i in layers], dim=2).float().cpu().numpy()


def _feature_extractor(auto, path):
    try:
        return auto.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"ssl: {path} has no usable feature extractor (preprocessor_config.json): {e}") from None
