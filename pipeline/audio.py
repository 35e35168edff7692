"""Reading an item's audio span, and spectra shared between audio stages."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Literal, Optional

from .media import lacks_stream, require_media_file
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
    A video file's audio track is decoded by ffmpeg.
    """
    import soundfile as sf

    path = media.path
    require_media_file(path, "audio")
    if os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES:
        y, file_sr = _video_audio(media)
        return _to_mono_rate(y, file_sr, sr, resample, path)
    size_field = _check_wav_complete(path)
    source = (lambda: path) if size_field is None else _with_data_size(path, size_field)
    try:
        info = sf.info(source())
    except Exception as e:  # libsndfile's own message names the problem
        raise ItemError(f"cannot decode audio {path}: {e}") from None
    if info.frames == 0:
        raise ItemError(f"audio file has no samples: {path}")
    start = int(round((media.start or 0.0) * info.samplerate))
    stop = info.frames if media.end is None else int(round(media.end * info.samplerate))
    if start >= info.frames:
        raise ItemError(f"audio span starts at {media.start}s, past the end of {path} "
                        f"({info.frames / info.samplerate:.3f}s)")
    y, file_sr = sf.read(source(), start=start, stop=min(stop, info.frames), dtype="float32",
                         always_2d=True)
    return _to_mono_rate(y, file_sr, sr, resample, path)


def _to_mono_rate(y, file_sr, sr, resample, path):
    """(samples, channels) at file_sr -> mono float32 at sr."""
    import numpy as np
    bad = y.size - np.count_nonzero(np.isfinite(y))
    if bad:   # a NaN or inf spreads over every frame it touches: the features would be silently wrong
        raise ItemError(f"audio has {bad} non-finite sample(s) (NaN or inf): {path}")
    y = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    if file_sr != sr:
        if not resample:
            raise ItemError(f"{path} is {file_sr} Hz, the stage wants {sr} Hz and resample=false")
        import librosa
        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


# Containers libsndfile cannot open: their audio track is decoded by ffmpeg
# (MELD clips, Aff-Wild2 and CMU-MOSEI videos have no separate audio file).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv"})


def _video_audio(media):
    """The audio track of a video file over the media's span, at its own rate
    and channels: ffmpeg decodes it to float WAV on a pipe (no temporary file)."""
    import io
    import subprocess
    import soundfile as sf
    command = ["ffmpeg", "-nostdin", "-v", "error"]
    if media.start:
        command += ["-ss", f"{media.start:.6f}"]
    if media.end is not None:
        command += ["-t", f"{media.end - (media.start or 0.0):.6f}"]
    command += ["-i", media.path, "-map", "0:a:0", "-vn", "-f", "wav", "-c:a", "pcm_f32le", "-"]
    try:
        result = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError:
        raise ItemError(f"ffmpeg is needed to read the audio of {media.path} and is not installed") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        if lacks_stream(media.path, "a"):     # ffmpeg's own text would only say the map matched nothing
            raise ItemError(f"no audio track in {media.path}")
        raise ItemError(f"cannot decode the audio track of {media.path}: {message[-1] if message else 'ffmpeg failed'}")
    y, file_sr = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    if len(y) == 0:
        raise ItemError(f"no audio samples in the span {media.start}s-{media.end}s of {media.path}")
    return y, file_sr


# Data sizes a writer leaves in the header when it cannot seek back to fill it
# in (ffmpeg writing to a pipe): "unknown length", read as far as the data goes.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


def _check_wav_complete(path):
    """Refuse WAV files whose data chunk is shorter than the header says.

    libsndfile quietly reads what is there; a cut-off file is almost always a
    broken copy, and features of half an utterance would be silently wrong.
    Returns the offset of the data chunk's size field when the header says
    the length is unknown, else None.
    """
    if not path.lower().endswith(".wav"):
        return None
    size = os.path.getsize(path)
    if size == 0:
        raise ItemError(f"audio file is empty (0 bytes): {path}")
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None  # not RIFF/WAVE: let libsndfile judge it
    pos = 12
    while pos + 8 <= len(head):
        cid, clen = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"data":
            have = size - (pos + 8)
            if clen in _UNKNOWN_SIZES and have > 0:
                return pos + 4
            if have < clen:
                raise ItemError(f"truncated WAV: header declares {clen} bytes of audio, "
                                f"file holds {have}: {path}")
            return None
        pos += 8 + clen + (clen & 1)
    return None


def _with_data_size(path, size_field):
    """A function giving the WAV's bytes, as a new file object each call, with
    the data size set to what the file holds (libsndfile reads a declared 0 as
    no audio at all)."""
    import io
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[size_field:size_field + 4] = struct.pack("<I", min(len(data) - size_field - 4, 0xFFFFFFFE))
    data[4:8] = struct.pack("<I", min(len(data) - 8, 0xFFFFFFFE))
    return lambda: io.BytesIO(data)


def power_spectrogram(ctx, sr, n_fft, hop, win, window, resample=True):
    """|STFT|^2 as (frames, bins), memoised on the item context so fbank and
    mfcc share it. The same frames, window and centre padding as librosa.stft
    (FFT in float64, result rounded to complex64 as librosa does), laid out
    frame-major so the mel product runs on contiguous rows."""
    def compute():
        import numpy as np
        import scipy.fft
        y = ctx.audio(sr, resample)
        y = np.pad(y, n_fft // 2, mode="constant")
        frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
        spec = scipy.fft.rfft(frames * _fft_window(ctx, window, win, n_fft), axis=1).astype(np.complex64)
        return spec.real ** 2 + spec.imag ** 2
    return ctx.memo(("power", sr, n_fft, hop, win, window, resample), compute)


def _fft_window(ctx, window, win, n_fft):
    def compute():
        import librosa
        return librosa.util.pad_center(librosa.filters.get_window(window, win, fftbins=True), size=n_fft)
    return ctx.memo(("window", window, win, n_fft), compute, shared=True)


def mel_power(ctx, sr, n_fft, hop, win, window, n_mels, fmin, fmax, resample=True):
    """Mel-band power (n_mels, T), memoised like the spectrogram."""
    def compute():
        import librosa
        basis = ctx.memo(("melbasis", sr, n_fft, n_mels, fmin, fmax),
                         lambda: librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels,
                                                     fmin=fmin, fmax=fmax).T.copy(), shared=True)
        return (power_spectrogram(ctx, sr, n_fft, hop, win, window, resample) @ basis).T
    return ctx.memo(("mel", sr, n_fft, hop, win, window, n_mels, fmin, fmax, resample), compute)


def stack_deltas(feat, order: int, width: int):
    """(D, T) features -> (T, D * (order + 1)) with deltas appended, equal to
    librosa.feature.delta (Savitzky-Golay, edges by polynomial fit)."""
    import numpy as np
    parts = [feat]
    if order and feat.shape[1] >= 3:
        w = min(width, feat.shape[1] if feat.shape[1] % 2 else feat.shape[1] - 1)
        parts += [savgol_delta(feat, k, w) for k in range(1, order + 1)]
    elif order:
        parts += [np.zeros_like(feat)] * order   # too short for a delta window
    return np.concatenate(parts, axis=0).T.astype(np.float32)


def savgol_delta(x, order, width):
    """librosa.feature.delta(x, width=width, order=order) along the last axis.

    scipy's savgol_filter re-fits the edge polynomials with a least-squares
    solve per row and call; the fits are linear in the data, so the operators
    are built once per (order, width) and applied as two small products."""
    import numpy as np
    from scipy.ndimage import convolve1d
    coeffs, left, right = _savgol_operators(order, width)
    out = convolve1d(x, coeffs, axis=-1, mode="constant")
    half = width // 2
    out[..., :half] = x[..., :width] @ left.T
    out[..., -half:] = x[..., -width:] @ right.T
    return out.astype(x.dtype, copy=False) if np.issubdtype(x.dtype, np.floating) else out


_OPERATORS = {}


def _savgol_operators(order, width):
    if (order, width) not in _OPERATORS:
        import math
        import numpy as np
        from scipy.signal import savgol_coeffs
        t = np.arange(width, dtype=np.float64)
        fit = np.linalg.pinv(np.vander(t, order + 1, increasing=True))   # data -> poly coefficients
        half = width // 2

        def derivative_at(points):
            return np.array([[math.perm(k, order) * p ** (k - order) if k >= order else 0.0
                              for k in range(order + 1)] for p in points])
        _OPERATORS[(order, width)] = (savgol_coeffs(width, order, deriv=order, use="conv"),
                                      derivative_at(t[:half]) @ fit, derivative_at(t[width - half:]) @ fit)
    return _OPERATORS[(order, width)]


def frame_params(sr, win_ms, hop_ms, n_fft):
    win = int(round(sr * win_ms / 1000))
    hop = int(round(sr * hop_ms / 1000))
    if n_fft is None:
        n_fft = 1 << (win - 1).bit_length()
    return win, hop, n_fft
