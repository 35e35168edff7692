"""openSMILE features (the `opensmile` package): any of its feature sets at
functionals or low-level-descriptor level, on the item's span.

- level=functionals: one (D,) vector per item (an (N, D) matrix per shard);
  with `window_s` set, functionals of each window by the shared window rule
  (pipeline/windows.py), a sequence timed at the window centres.
- level=lld / lld_deltas: frame sequences at openSMILE's 100 Hz frame rate,
  timed by openSMILE's own frame start times.

Column names are stored once per shard (`feature_names` in the stage attrs).
The audio comes from ctx.audio, so span cutting and resampling are the ones
every other audio stage uses, and it is handed to Smile.process_signal.
"""
from dataclasses import dataclass
from typing import Literal, Optional

from ..stage import ConfigError, ItemError, Result, Seq, Stage, Vec
from . import STAGES

# The package's FeatureSet names (tests check this list against opensmile).
FEATURE_SETS = Literal["eGeMAPSv02", "ComParE_2016", "GeMAPSv01b", "eGeMAPSv01b", "emobase",
                       "IS09", "IS10", "IS11", "IS12", "IS13", "GeMAPS", "eGeMAPS"]
# Short option names -> the package's FeatureLevel names.
LEVELS = {"functionals": "Functionals", "lld": "LowLevelDescriptors",
          "lld_deltas": "LowLevelDescriptors_Deltas"}
# The GeMAPS family configs define no delta LLDs (opensmile refuses them).
NO_DELTAS = {"GeMAPS", "GeMAPSv01b", "eGeMAPS", "eGeMAPSv01b", "eGeMAPSv02"}
# Every openSMILE config shipped with the package steps frames by 10 ms.
FRAME_RATE = 100.0


@dataclass(frozen=True)
class Config:
    feature_set: FEATURE_SETS = "eGeMAPSv02"
    level: Literal["functionals", "lld", "lld_deltas"] = "functionals"
    window_s: Optional[float] = None   # functionals only: None = whole span, else window length
    hop_s: float = 0.5                 # window hop when window_s is set
    sample_rate: int = 16000
    resample: bool = True


@STAGES.register()
class OpenSmile(Stage):
    name = "opensmile"
    version = "1"
    Config = Config
    reads = ("audio",)
    group = "audio-dsp"     # shares the decoded audio with fbank/mfcc in one task
    batch_items = 64

    def validate(self):
        cfg = self.config
        if cfg.level == "lld_deltas" and cfg.feature_set in NO_DELTAS:
            raise ConfigError(f"opensmile: level=lld_deltas is not available for feature_set="
                              f"{cfg.feature_set} (use level=lld, or a ComParE_2016/emobase/IS* set)")
        if cfg.window_s is not None:
            if cfg.level != "functionals":
                raise ConfigError("opensmile: window_s applies to level=functionals only "
                                  f"(level={cfg.level} is already a frame sequence)")
            if cfg.window_s <= 0 or cfg.hop_s <= 0:
                raise ConfigError("opensmile: window_s and hop_s must be positive")
        if cfg.sample_rate <= 0:
            raise ConfigError("opensmile: sample_rate must be positive")

    @property
    def rate(self):
        """Frames per second of the sequence levels (None for one vector per item)."""
        cfg = self.config
        if cfg.level != "functionals":
            return FRAME_RATE
        return None if cfg.window_s is None else 1.0 / cfg.hop_s

    def identity(self):
        # Feature values depend on the openSMILE build shipped with the package.
        from importlib.metadata import version
        return {"opensmile": version("opensmile")}

    def setup(self):
        import opensmile
        smile = opensmile.Smile(feature_set=opensmile.FeatureSet[self.config.feature_set],
                                feature_level=opensmile.FeatureLevel[LEVELS[self.config.level]])
        return {"smile": smile, "names": list(smile.feature_names)}

    def shard_attrs(self):
        cfg = self.config
        attrs = {"feature_names": self.resources["names"], "feature_set": cfg.feature_set,
                 "level": cfg.level}
        if cfg.level != "functionals":
            attrs["frame_rate"] = FRAME_RATE
            attrs["frame_times"] = "frame start, as openSMILE reports it"
        elif cfg.window_s is not None:
            attrs.update(window_s=cfg.window_s, hop_s=cfg.hop_s, window_times="window centre")
        return attrs

    def compute(self, ctx):
        cfg = self.config
        y = ctx.audio(cfg.sample_rate, cfg.resample)
        meta = {"samples": int(len(y))}
        if cfg.window_s is not None:
            return self._windowed(y, meta)
        values, starts = self._smile(y, "the utterance")
        if cfg.level == "functionals":
            return Result({"functionals": Vec(values[0])}, meta)
        return Result({cfg.level: Seq(values, rate=FRAME_RATE, times=starts)}, meta)

    def _windowed(self, y, meta):
        import numpy as np
        from ..windows import cut_windows
        cfg = self.config
        wins, centres = cut_windows(y, cfg.sample_rate, cfg.window_s, cfg.hop_s)
        rows = []
        for k, w in enumerate(wins):
            values, _starts = self._smile(w, f"window {k} (centre {centres[k]:.3f} s)")
            rows.append(values[0])     # functionals: one row per signal
        meta.update(windows=len(rows), padded=bool(len(y) < wins.shape[1]))
        return Result({"functionals": Seq(np.stack(rows), rate=1.0 / cfg.hop_s, times=centres)}, meta)

    def _smile(self, y, what):
        """(values (T, D) float32, frame start times) from openSMILE for one signal."""
        import warnings
        import numpy as np
        cfg = self.config
        with warnings.catch_warnings():
            # The package warns and returns one all-NaN row for a too-short
            # signal; that case becomes the item error below.
            warnings.filterwarnings("ignore", message="Segment too short")
            df = self.resources["smile"].process_signal(y, cfg.sample_rate)
        values = df.to_numpy(dtype=np.float32)
        if values.size == 0 or np.isnan(values).all():
            raise ItemError(f"{what} is too short for openSMILE {cfg.feature_set} {cfg.level}: "
                            f"{len(y) / cfg.sample_rate:.3f} s gives no complete analysis frame")
        starts = df.index.get_level_values("start").total_seconds().to_numpy(dtype=np.float64)
        return values, starts
