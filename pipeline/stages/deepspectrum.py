"""DeepSpectrum: ImageNet CNN features of spectrogram images.

Each window of the item (the shared rule of pipeline/windows.py: 1 s, hop
0.5 s by default; or the whole utterance with window_s unset) becomes a
mel spectrogram in dB, scaled to the window's own 0..-top_db dB range,
drawn low frequencies at the bottom with a fixed matplotlib colour map at a
fixed image size, and is embedded by a torchvision CNN (pipeline/cnn.py)
whose classifier is removed: one globally pooled vector per window (1024-d
for DenseNet-121). Images of all items of a task go through the network in
batches, on CUDA when present.
"""
from dataclasses import dataclass
from typing import Literal, Optional

from .. import cnn
from ..stage import ConfigError, ItemError, Result, Seq, Stage, Vec
from . import STAGES

COLORMAPS = Literal["viridis", "magma", "plasma", "inferno", "cividis", "jet", "gray"]


@dataclass(frozen=True)
class Config:
    window_s: Optional[float] = 1.0     # None: one image of the whole utterance
    hop_s: float = 0.5
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160               # STFT hop in samples (10 ms at 16 kHz)
    n_mels: int = 128
    fmin: float = 0.0
    fmax: Optional[float] = None        # None: sample_rate / 2
    top_db: float = 80.0                # dynamic range mapped onto the colour map
    colormap: COLORMAPS = "viridis"
    image_size: int = 224
    arch: str = "densenet121"           # any backbone in pipeline.cnn.ARCHES
    weights: str = "imagenet"           # "imagenet", a torchvision weights name, or "random"
    weights_path: Optional[str] = None  # a local weights file instead of torchvision's cache
    seed: Optional[int] = None          # required with weights=random
    batch_size: int = 32                # images per forward pass
    threads: int = 1                    # torch CPU threads per worker
    resample: bool = True


@STAGES.register()
class DeepSpectrum(Stage):
    name = "deepspectrum"
    version = "1"
    Config = Config
    reads = ("audio",)
    batched = True
    gpu = True
    batch_items = 32
    gpu_batch_items = 128        # on a GPU worker: fewer, larger tasks (a forward pass stays batch_size images)
    runtime_options = ("batch_size", "threads")
    location_options = ("weights_path",)         # identity() holds the file's digest

    def validate(self):
        cfg = self.config
        if cfg.window_s is not None and (cfg.window_s <= 0 or cfg.hop_s <= 0):
            raise ConfigError("deepspectrum: window_s and hop_s must be positive")
        for key in ("sample_rate", "n_fft", "hop_length", "n_mels", "image_size", "batch_size", "threads"):
            if getattr(cfg, key) <= 0:
                raise ConfigError(f"deepspectrum: {key} must be positive")
        if cfg.top_db <= 0:
            raise ConfigError("deepspectrum: top_db must be positive")
        cnn.check_weights(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed, who="deepspectrum")

    def identity(self):
        # Memoised: the driver asks several times per run and a digest reads the file.
        if not hasattr(self, "_identity"):
            cfg = self.config
            self._identity = cnn.weights_identity(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed)
        return self._identity

    def setup(self):
        import matplotlib
        import torch
        cfg = self.config
        device = cnn.pick_device()
        if device == "cpu":
            torch.set_num_threads(cfg.threads)
        model, dim = cnn.load_backbone(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed, device)
        return {"model": model, "dim": dim, "device": device, "cmap": matplotlib.colormaps[cfg.colormap]}

    def shard_attrs(self):
        cfg = self.config
        return {"arch": cfg.arch, "dim": cnn.ARCHES[cfg.arch].dim, "weights": self.identity(),
                "window_s": cfg.window_s, "hop_s": cfg.hop_s, "colormap": cfg.colormap,
                "image_size": cfg.image_size, "window_times": "window centre"}

    def compute_batch(self, ctxs):
        import numpy as np
        res = self.resources
        out, rendered = [], []
        for ctx in ctxs:
            try:
                rendered.append(self._images(ctx))
                out.append(None)
            except ItemError as e:
                out.append(e)
        if rendered:
            images = np.concatenate([imgs for imgs, _c, _m in rendered])
            feats = cnn.embed_batches(res["model"], images, res["device"], self.config.batch_size)
            ends = np.cumsum([len(imgs) for imgs, _c, _m in rendered])
            parts = iter(zip(np.split(feats, ends[:-1]), rendered))
            out = [r if r is not None else self._result(*next(parts)) for r in out]
        return out

    def compute(self, ctx):
        r = self.compute_batch([ctx])[0]
        if isinstance(r, Exception):
            raise r
        return r

    def _images(self, ctx):
        """(uint8 images (n, 3, S, S), window centres or None, meta) of one item."""
        cfg = self.config
        y = ctx.audio(cfg.sample_rate, cfg.resample)
        meta = {"samples": int(len(y)), "weights": cfg.weights, "seed": cfg.seed}
        if cfg.window_s is None:
            wins, centres = y[None, :], None
        else:
            from ..windows import cut_windows
            wins, centres = cut_windows(y, cfg.sample_rate, cfg.window_s, cfg.hop_s)
            meta.update(windows=len(wins), padded=bool(len(y) < wins.shape[1]))
        return spectrogram_images(wins, cfg, self.resources["cmap"]), centres, meta

    def _result(self, feats, rendered):
        _imgs, centres, meta = rendered
        if centres is None:
            return Result({"deepspectrum": Vec(feats[0])}, meta)
        return Result({"deepspectrum": Seq(feats, rate=1.0 / self.config.hop_s, times=centres)}, meta)


def spectrogram_images(wins, cfg, cmap):
    """Signals (n, L) -> colour spectrogram images, uint8 (n, 3, image_size, image_size)."""
    import librosa
    import numpy as np
    import torch
    mel = librosa.feature.melspectrogram(y=wins, sr=cfg.sample_rate, n_fft=cfg.n_fft,
                                         hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                                         fmin=cfg.fmin, fmax=cfg.fmax, power=2.0)
    # dB below each window's own peak, clipped at -top_db and mapped to 0..1:
    # every image uses the full colour range, as a plot auto-scaled per image.
    amin = 1e-10
    peak = np.maximum(mel.max(axis=(1, 2), keepdims=True), amin)
    db = 10.0 * np.log10(np.maximum(mel, amin) / peak)
    level = np.clip(db / cfg.top_db + 1.0, 0.0, 1.0)
    level[mel.max(axis=(1, 2)) <= amin] = 0.0          # pure silence: the colour map's floor
    level = level[:, ::-1, :].copy()                     # low frequencies at the bottom
    img = torch.nn.functional.interpolate(torch.from_numpy(level.astype(np.float32))[:, None],
                                          size=(cfg.image_size, cfg.image_size), mode="bilinear",
                                          align_corners=False, antialias=True)[:, 0]
    rgb = cmap(img.clamp_(0.0, 1.0).numpy(), bytes=True)[..., :3]   # (n, S, S, 3) uint8
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))
