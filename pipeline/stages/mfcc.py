"""MFCCs (DCT-II of log-mel power in dB, as librosa computes them), optionally with deltas."""
from dataclasses import dataclass
from typing import Optional

from ..audio import stack_deltas
from ..stage import ConfigError, Result, Seq, Stage
from . import STAGES
from .fbank import WINDOWS, check_frames, log_mel


@dataclass(frozen=True)
class Config:
    sample_rate: int = 16000
    n_mfcc: int = 13
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: Optional[int] = None
    window: WINDOWS = "hamming"
    fmin: float = 0.0
    fmax: Optional[float] = None
    deltas: int = 2
    delta_width: int = 9
    resample: bool = True


@STAGES.register()
class Mfcc(Stage):
    name = "mfcc"
    version = "1"
    Config = Config
    reads = ("audio",)
    group = "audio-dsp"
    batch_items = 128
    default_on = True

    def validate(self):
        check_frames(self.config)
        if not 1 <= self.config.n_mfcc <= self.config.n_mels:
            raise ConfigError("n_mfcc must be between 1 and n_mels")

    def compute(self, ctx):
        import librosa
        cfg = self.config
        mel, hop = log_mel(ctx, cfg, cfg.n_mels)
        ceps = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=cfg.n_mfcc)
        data = stack_deltas(ceps, cfg.deltas, cfg.delta_width)
        return Result({"mfcc": Seq(data, rate=cfg.sample_rate / hop)})
