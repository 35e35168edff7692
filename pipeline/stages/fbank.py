"""Log-mel filterbank energies, optionally with deltas."""
from dataclasses import dataclass

from ..audio import MelFrames, MelStage, stack_deltas
from ..stage import ConfigError, Result, Seq
from . import STAGES


@dataclass(frozen=True)
class Config(MelFrames):
    n_mels: int = 80
    deltas: int = 0                  # 0, 1 or 2: append first/second derivatives
    log_floor: float = 1e-10         # ln(max(power, floor))


@STAGES.register()
class Fbank(MelStage):
    name = "fbank"
    version = "1"
    Config = Config

    def validate(self):
        super().validate()
        if self.config.n_mels < 1:
            raise ConfigError("n_mels must be >= 1")

    def compute(self, ctx):
        import numpy as np
        cfg = self.config
        feat = np.log(np.maximum(self.mel(ctx), cfg.log_floor))
        return Result({"fbank": Seq(stack_deltas(feat, cfg.deltas, cfg.delta_width), rate=self.rate)},
                      {"samples": int(len(ctx.audio(cfg.sample_rate, cfg.resample)))})
