"""Log-mel filterbank energies, optionally with deltas."""
from dataclasses import dataclass
from typing import Literal, Optional

from ..audio import frame_params, mel_power, stack_deltas
from ..stage import ConfigError, Result, Seq, Stage
from . import STAGES

WINDOWS = Literal["hamming", "hann", "blackman", "rect"]
_WINDOW_NAMES = {"rect": "boxcar"}   # scipy's name for a rectangular window


@dataclass(frozen=True)
class Config:
    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: Optional[int] = None      # None: next power of two >= window
    window: WINDOWS = "hamming"
    fmin: float = 0.0
    fmax: Optional[float] = None     # None: sample_rate / 2
    deltas: int = 0                  # 0, 1 or 2: append first/second derivatives
    delta_width: int = 9
    log_floor: float = 1e-10         # ln(max(power, floor))
    resample: bool = True


def check_frames(cfg):
    if cfg.sample_rate <= 0 or cfg.win_ms <= 0 or cfg.hop_ms <= 0:
        raise ConfigError("sample_rate, win_ms and hop_ms must be positive")
    if cfg.deltas not in (0, 1, 2):
        raise ConfigError(f"deltas={cfg.deltas}: must be 0, 1 or 2")
    win, _, n_fft = frame_params(cfg.sample_rate, cfg.win_ms, cfg.hop_ms, cfg.n_fft)
    if n_fft < win:
        raise ConfigError(f"n_fft={n_fft} is shorter than the window ({win} samples)")
    if cfg.delta_width < 3 or cfg.delta_width % 2 == 0:
        raise ConfigError("delta_width must be odd and >= 3")


def log_mel(ctx, cfg, n_mels):
    """ln mel power (n_mels, T) for this config; shared STFT via the context."""
    win, hop, n_fft = frame_params(cfg.sample_rate, cfg.win_ms, cfg.hop_ms, cfg.n_fft)
    window = _WINDOW_NAMES.get(cfg.window, cfg.window)
    mel = mel_power(ctx, cfg.sample_rate, n_fft, hop, win, window, n_mels, cfg.fmin, cfg.fmax,
                    cfg.resample)
    return mel, hop


@STAGES.register()
class Fbank(Stage):
    name = "fbank"
    version = "1"
    Config = Config
    reads = ("audio",)
    group = "audio-dsp"
    batch_items = 128
    default_on = True

    def validate(self):
        check_frames(self.config)
        if self.config.n_mels < 1:
            raise ConfigError("n_mels must be >= 1")

    def compute(self, ctx):
        import numpy as np
        cfg = self.config
        mel, hop = log_mel(ctx, cfg, cfg.n_mels)
        feat = np.log(np.maximum(mel, cfg.log_floor))
        data = stack_deltas(feat, cfg.deltas, cfg.delta_width)
        return Result({"fbank": Seq(data, rate=cfg.sample_rate / hop)},
                      {"samples": int(len(ctx.audio(cfg.sample_rate, cfg.resample)))})
