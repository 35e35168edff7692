"""Whole-frame CNN embeddings per sampled video frame (HFF's visual stream).

Each sampled frame (pipeline/video.py: every k-th frame by default, or a
rate in Hz) is resized so its shorter side is `size` pixels, keeping the
aspect ratio, ImageNet-normalised and passed through a torchvision backbone
whose classifier is removed: the output is the global average pool of the
last feature map (512-d for ResNet-18). Weights follow pipeline/cnn.py:
ImageNet weights from local files, `weights=random` with a seed only when
asked for. Frames stream through in batches of `batch_size`; an item's video
is never held in memory.

Arrays: embedding (T, D) float32, frame (T,) frame index in the file.
Meta: the sampling facts of pipeline/video.py.
"""
from dataclasses import dataclass

from ..cnn import CnnOptions
from ..stage import ConfigError, Result, Seq, Stage
from ..video import FrameSampling, VideoSpan, sampling_of
from . import STAGES


@dataclass(frozen=True)
class Config(FrameSampling, CnnOptions):
    size: int = 224                     # shorter side of the resized frame


@STAGES.register()
class Frames(Stage):
    name = "frames"
    version = "1"
    Config = Config
    reads = ("video",)
    batch_items = 8              # a video item costs ~1 s: small tasks keep every worker busy
    gpu_batch_items = 16         # fewer GPU workers than CPU ones: larger tasks, same overhead per item
    runtime_options = ("batch_size", "device", "threads")   # cannot change the output: not in the key
    location_options = ("weights_path",)                    # identity() holds the file's digest
    gpu = True

    def validate(self):
        from ..cnn import check_weights
        cfg = self.config
        sampling_of(cfg).check(self.name)
        check_weights(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed, who=self.name)
        if cfg.size < 32 or cfg.batch_size < 1 or cfg.threads < 1:
            raise ConfigError(f"{self.name}: size must be >= 32, batch_size and threads >= 1")

    def identity(self):
        from ..cnn import weights_identity
        cfg = self.config
        return {"cnn": weights_identity(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed)}

    def shard_attrs(self):
        return {"arch": self.config.arch}

    def setup(self):
        import torch
        from ..cnn import load_backbone, pick_device
        cfg = self.config
        torch.set_num_threads(cfg.threads)
        device = pick_device(cfg.device)
        model, dim = load_backbone(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed, device)
        return {"model": model, "dim": dim, "device": device}

    def compute(self, ctx):
        import numpy as np
        from ..cnn import embed_batches
        cfg, res = self.config, self.resources
        span = VideoSpan(ctx.item.video, sampling_of(cfg))
        shape = _resized_shape(span.info.width, span.info.height, cfg.size)
        outs, batch = [], []
        for _, frame in span:
            batch.append(_prepare(frame, shape))
            if len(batch) == cfg.batch_size:
                outs.append(embed_batches(res["model"], np.stack(batch), res["device"], cfg.batch_size))
                batch = []
        if batch:
            outs.append(embed_batches(res["model"], np.stack(batch), res["device"], cfg.batch_size))
        emb = np.concatenate(outs) if outs else np.zeros((0, res["dim"]), np.float32)
        times = np.asarray(span.times, np.float64)
        return Result({"embedding": Seq(emb, times=times),
                       "frame": Seq(np.asarray(span.frames, np.int64), times=times)}, span.meta())


def _resized_shape(width, height, size):
    """(w, h) with the shorter side `size`, aspect kept."""
    scale = size / min(width, height)
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def _prepare(frame, shape):
    """BGR frame -> (3, h, w) uint8 RGB at the network's input size."""
    import cv2
    small = cv2.resize(frame, shape, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
