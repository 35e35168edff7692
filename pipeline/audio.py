"""Reading an item's audio span, and spectra shared between audio stages."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Literal, Optional

from .stage import ConfigError, ItemError, Stage

_WINDOW_NAMES = {"rect": "boxcar"}   # scipy's name for a rectangular window


@dataclass(frozen=True)
class MelFrames:
    """Framing and mel options shared by the mel-based stages (fbank, mfcc).
    When two stages agree on them, one task computes the STFT once for both."""
    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: Optional[int] = None      # None: next power of two >= window
    window: Literal["hamming", "hann", "blackman", "rect"] = "hamming"
    fmin: float = 0.0
    fmax: Optional[float] = None     # None: sample_rate / 2
    deltas: int = 0
    delta_width: int = 9
    resample: bool = True            # False: a file at another rate is an item error


class MelStage(Stage):
    """Base of the stages computed from mel power frames of the item's audio."""
    reads = ("audio",)
    group = "audio-dsp"
    batch_items = 128
    default_on = True

    def validate(self):
        cfg = self.config
        if cfg.sample_rate <= 0 or cfg.win_ms <= 0 or cfg.hop_ms <= 0:
            raise ConfigError(f"{self.name}: sample_rate, win_ms and hop_ms must be positive")
        if cfg.deltas not in (0, 1, 2):
            raise ConfigError(f"{self.name}: deltas={cfg.deltas}: must be 0, 1 or 2")
        win, _, n_fft = frame_params(cfg.sample_rate, cfg.win_ms, cfg.hop_ms, cfg.n_fft)
        if n_fft < win:
            raise ConfigError(f"{self.name}: n_fft={n_fft} is shorter than the window ({win} samples)")
        if cfg.delta_width < 3 or cfg.delta_width % 2 == 0:
            raise ConfigError(f"{self.name}: delta_width must be odd and >= 3")

    @property
    def rate(self):
        cfg = self.config
        return cfg.sample_rate / frame_params(cfg.sample_rate, cfg.win_ms, cfg.hop_ms, cfg.n_fft)[1]

    def mel(self, ctx):
        """Mel power (n_mels, T) of the item; the STFT is shared via the context."""
        cfg = self.config
        win, hop, n_fft = frame_params(cfg.sample_rate, cfg.win_ms, cfg.hop_ms, cfg.n_fft)
        return mel_power(ctx, cfg.sample_rate, n_fft, hop, win, _WINDOW_NAMES.get(cfg.window, cfg.window),
                         cfg.n_mels, cfg.fmin, cfg.fmax, cfg.resample)


def load_span(media, sr: int, resample: bool = True):
    """Mono float32 samples of `media`'s span at `sr` Hz.

    Stereo is averaged to mono; other rates are resampled (soxr) unless
    `resample` is False, in which case a rate mismatch is an item error.
    """
    import numpy as np
    import soundfile as sf

    path = media.path
    if not os.path.exists(path):
        raise ItemError(f"audio file not found: {path}")
    _check_wav_complete(path)
    try:
        info = sf.info(path)
    except Exception as e:  # libsndfile's own message names the problem
        raise ItemError(f"cannot decode audio {path}: {e}") from None
    if info.frames == 0:
        raise ItemError(f"audio file has no samples: {path}")
    start = int(round((media.start or 0.0) * info.samplerate))
    stop = info.frames if media.end is None else int(round(media.end * info.samplerate))
    if start >= info.frames:
        raise ItemError(f"audio span starts at {media.start}s, past the end of {path} "
                        f"({info.frames / info.samplerate:.3f}s)")
    y, file_sr = sf.read(path, start=start, stop=min(stop, info.frames), dtype="float32",
                         always_2d=True)
    y = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    if file_sr != sr:
        if not resample:
            raise ItemError(f"{path} is {file_sr} Hz, the stage wants {sr} Hz and resample=false")
        import librosa
        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def _check_wav_complete(path):
    """Refuse WAV files whose data chunk is shorter than the header says.

    libsndfile quietly reads what is there; a cut-off file is almost always a
    broken copy, and features of half an utterance would be silently wrong.
    """
    if not path.lower().endswith(".wav"):
        return
    size = os.path.getsize(path)
    if size == 0:
        raise ItemError(f"audio file is empty (0 bytes): {path}")
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return  # not RIFF/WAVE: let libsndfile judge it
    pos = 12
    while pos + 8 <= len(head):
        cid, clen = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"data":
            have = size - (pos + 8)
            if have < clen:
                raise ItemError(f"truncated WAV: header declares {clen} bytes of audio, "
                                f"file holds {have}: {path}")
            return
        pos += 8 + clen + (clen & 1)


def power_spectrogram(ctx, sr, n_fft, hop, win, window, resample=True, center=True):
    """|STFT|^2, memoised on the item context so fbank and mfcc share it."""
    def compute():
        import librosa
        import numpy as np
        y = ctx.audio(sr, resample)
        return np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win,
                                   window=window, center=center)) ** 2
    return ctx.memo(("power", sr, n_fft, hop, win, window, resample, center), compute)


def mel_power(ctx, sr, n_fft, hop, win, window, n_mels, fmin, fmax, resample=True):
    """Mel-band power (n_mels, T), memoised like the spectrogram."""
    def compute():
        import librosa
        basis = ctx.memo(("melbasis", sr, n_fft, n_mels, fmin, fmax),
                         lambda: librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels,
                                                     fmin=fmin, fmax=fmax), shared=True)
        return basis @ power_spectrogram(ctx, sr, n_fft, hop, win, window, resample)
    return ctx.memo(("mel", sr, n_fft, hop, win, window, n_mels, fmin, fmax, resample), compute)


def stack_deltas(feat, order: int, width: int):
    """(D, T) features -> (T, D * (order + 1)) with librosa deltas appended."""
    import librosa
    import numpy as np
    parts = [feat]
    if order and feat.shape[1] >= 3:
        w = min(width, feat.shape[1] if feat.shape[1] % 2 else feat.shape[1] - 1)
        parts += [librosa.feature.delta(feat, order=k, width=w) for k in range(1, order + 1)]
    elif order:
        parts += [np.zeros_like(feat)] * order   # too short for a delta window
    return np.concatenate(parts, axis=0).T.astype(np.float32)


def frame_params(sr, win_ms, hop_ms, n_fft):
    win = int(round(sr * win_ms / 1000))
    hop = int(round(sr * hop_ms / 1000))
    if n_fft is None:
        n_fft = 1 << (win - 1).bit_length()
    return win, hop, n_fft
