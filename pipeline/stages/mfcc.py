"""MFCCs (DCT-II of log-mel power in dB, as librosa computes them), optionally with deltas."""
from dataclasses import dataclass

from ..audio import MelFrames, MelStage, stack_deltas
from ..stage import ConfigError, Result, Seq
from . import STAGES


@dataclass(frozen=True)
class Config(MelFrames):
    n_mfcc: int = 13
    n_mels: int = 40
    deltas: int = 2


@STAGES.register()
class Mfcc(MelStage):
    name = "mfcc"
    version = "1"
    Config = Config

    def validate(self):
        super().validate()
        if not 1 <= self.config.n_mfcc <= self.config.n_mels:
            raise ConfigError("n_mfcc must be between 1 and n_mels")

    def compute(self, ctx):
        import librosa
        cfg = self.config
        ceps = librosa.feature.mfcc(S=librosa.power_to_db(self.mel(ctx)), n_mfcc=cfg.n_mfcc)
        return Result({"mfcc": Seq(stack_deltas(ceps, cfg.deltas, cfg.delta_width), rate=self.rate)})
