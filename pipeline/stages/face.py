"""Face landmarks, blendshapes and a face embedding per sampled video frame
(MediaPipe Tasks FaceLandmarker).

Where to look (`search`):
- `halves` (default): the left and right half of the picture are searched
  separately. Two-person frames need this: IEMOCAP's dialog videos show both
  actors at 720x480 with faces about 65 px wide, too small for MediaPipe's
  detector in the whole frame, easily found in a half. Results are stored
  per region, as arrays `left_<name>` and `right_<name>`. Which IEMOCAP
  actor sits on which side is not documented by the corpus, so both halves
  are kept and the head chooses (or a user who knows the seating does).
- `whole`: one search of the whole frame, arrays `<name>` without prefix;
  the right choice for one-person videos (a centred face would be cut in
  two by the halves).
An item whose reader set `video.region` (Aff-Wild2 `_left`/`_right`) is
searched in that half only; with `halves` the other half's arrays are then
empty (no steps), with `whole` the plain arrays hold that half.

Arrays per region, one step per sampled frame (times in item seconds):
  found (T,) bool; box (T, 4) x0, y0, x1, y1 of the landmarks' extent;
  landmarks (T, 478, 3) x, y, z; blendshapes (T, 52); embedding (T, D).
x and y are fractions of the whole frame's width and height (also for a
half), z is MediaPipe's relative depth in units of x. Frames without a face
are data, not errors: found is False and the other values are 0. `frame`
(T,) holds each step's frame index in the file.

Embeddings (`embedding`):
- `blendshapes` (default, no extra model): the 52 expression coefficients,
  then the landmarks' x, y geometry with position, in-plane rotation (the
  eye line made level) and size (the outer eye corners 1 apart) removed:
  52 + 2 * 478 = 1008 values.
- `cnn`: the face crop, rotated so the eyes are level, through a torchvision
  backbone (pipeline/cnn.py: ImageNet weights from local files, or
  weights=random with a seed only when asked), global-average pooled.
- `expression`: the same aligned crop through an expression-trained face
  network named by `weights` (e.g. "affectnet_resnet50"), read from a file the user supplies
  (`weights_path`, or its default place; face_net.py): EMMA-Net's face
  stream. Missing file: an error naming the network and how to provide it.

Running mode: `image` (default) detects in every sampled frame on its own,
so an item's result never depends on the items before it; `video` tracks
faces from frame to frame with a fresh MediaPipe stream per item and region
(about 0.1 s to open each), which pays off only for long items sampled densely.

Meta: the sampling facts of pipeline/video.py, `regions` searched,
`no_face_frames` per region and `no_face_fraction` (share of the searched
region-frames without a face; its mean is shown in the run summary).
"""
from dataclasses import dataclass
from typing import Literal

from ..cnn import CnnOptions
from ..landmarks import LandmarkerOptions
from ..stage import ConfigError, Result, Seq, Stage
from ..video import (FrameSampling, REGION_SETS, VideoSpan, crop_region, prefix, region_slots, regions_for,
                     sampling_of)
from . import STAGES

MODEL_FILE = "face_landmarker.task"
N_LANDMARKS = 478
# MediaPipe's blendshape categories in output order (checked against the model in the tests).
BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
# Outer eye corners in MediaPipe's face mesh (the picture's left one first).
EYE_CORNERS = (33, 263)


@dataclass(frozen=True)
class Config(FrameSampling, LandmarkerOptions, CnnOptions):
    search: Literal["halves", "whole"] = "halves"
    # cnn: arch/weights options apply; expression: weights names the network (face_net.py), weights_path its file
    embedding: Literal["blendshapes", "cnn", "expression"] = "blendshapes"
    crop_size: int = 224                # cnn / expression embedding: side of the aligned crop
    crop_margin: float = 0.25           # cnn / expression embedding: context around the landmarks' extent


@STAGES.register()
class Face(Stage):
    name = "face"
    version = "1"
    Config = Config
    reads = ("video",)
    batch_items = 8              # a video item costs ~1 s: small tasks keep every worker busy
    runtime_options = ("batch_size", "device", "threads")   # cannot change the output: not in the key
    location_options = ("weights_path", "model_path")       # identity() holds the files' digests
    summary_meta = ("no_face_fraction",)

    def __init__(self, config):
        super().__init__(config)
        self.gpu = config.embedding != "blendshapes"     # only the CNN embeddings want a GPU worker

    def validate(self):
        from ..landmarks import check_confidences, check_model
        cfg = self.config
        sampling_of(cfg).check(self.name)
        check_confidences(cfg, self.name, ("min_detection_confidence", "min_presence_confidence",
                                           "min_tracking_confidence"))
        if cfg.embedding == "cnn":
            from ..cnn import check_weights
            check_weights(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed, who=self.name)
        if cfg.embedding == "expression":
            from .face_net import check_expression_net
            check_expression_net(cfg, self.name)
        if cfg.embedding != "blendshapes":
            if cfg.crop_size < 32 or not 0 <= cfg.crop_margin <= 2:
                raise ConfigError(f"{self.name}: crop_size must be >= 32 and crop_margin in [0, 2]")
        check_model(cfg.model_path, cfg.model_sha256, MODEL_FILE, self.name)

    def identity(self):
        from ..landmarks import check_model
        cfg = self.config
        ident = {"model_sha256": check_model(cfg.model_path, cfg.model_sha256, MODEL_FILE, self.name)}
        if cfg.embedding == "cnn":
            from ..cnn import weights_identity
            ident["cnn"] = weights_identity(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed)
        if cfg.embedding == "expression":
            from .face_net import expression_identity
            ident["expression"] = expression_identity(cfg)
        return ident

    def shard_attrs(self):
        return {"blendshapes": list(BLENDSHAPES), "regions": list(REGION_SETS[self.config.search]),
                "embedding": self.config.embedding}

    # --- worker side -------------------------------------------------------
    def setup(self):
        from ..landmarks import task_resources
        cfg = self.config
        res = task_resources(cfg, MODEL_FILE, self.name, _make_landmarker)
        if cfg.embedding != "blendshapes":
            res["cnn"] = _load_cnn(cfg)
        return res

    def compute(self, ctx):
        import cv2
        from ..landmarks import Detector
        cfg, res = self.config, self.resources
        span = VideoSpan(ctx.item.video, sampling_of(cfg))
        regions = regions_for(cfg.search, ctx.item.video)
        rows = {r: _FaceRows(r, span.info.width, span.info.height, cfg) for r in regions}
        with Detector(res["make_task"], cfg.running_mode, regions, res.get("task")) as detect:
            for t, frame in span:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                for region in regions:
                    crop, x0 = crop_region(rgb, region)
                    rows[region].add(detect(region, crop, t), crop.shape[1], x0, rgb)
        return _result(cfg, span, rows, res.get("cnn"))


def _make_landmarker(cfg, path):
    from mediapipe.tasks.python import BaseOptions, vision
    from ..landmarks import running_mode
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=path), running_mode=running_mode(cfg.running_mode),
        num_faces=1, min_face_detection_confidence=cfg.min_detection_confidence,
        min_face_presence_confidence=cfg.min_presence_confidence,
        min_tracking_confidence=cfg.min_tracking_confidence, output_face_blendshapes=True)
    return vision.FaceLandmarker.create_from_options(options)


def _load_cnn(cfg):
    import torch
    from ..cnn import load_backbone, pick_device
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if cfg.embedding == "expression":
        from .face_net import load_expression_net
        model, dim = load_expression_net(cfg, device)
    else:
        model, dim = load_backbone(cfg.arch, cfg.weights, cfg.weights_path, cfg.seed, device)
    return {"model": model, "dim": dim, "device": device}


class _FaceRows:
    """Per-frame results of one region, gathered as the frames stream by."""

    def __init__(self, region, width, height, cfg):
        self.region, self.width, self.height, self.cfg = region, width, height, cfg
        self.found, self.landmarks, self.blendshapes, self.crops = [], [], [], []

    def add(self, result, crop_width, x0, rgb):
        import numpy as np
        if not result.face_landmarks:
            self.found.append(False)
            self.landmarks.append(np.zeros((N_LANDMARKS, 3), np.float32))
            self.blendshapes.append(np.zeros(len(BLENDSHAPES), np.float32))
            return
        pts = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], np.float32)
        # From the crop's fractions to the whole frame's: x and z scale with the crop width.
        pts[:, 0] = (pts[:, 0] * crop_width + x0) / self.width
        pts[:, 2] *= crop_width / self.width
        self.found.append(True)
        self.landmarks.append(pts)
        self.blendshapes.append(np.array([c.score for c in result.face_blendshapes[0]], np.float32))
        if self.cfg.embedding != "blendshapes":
            self.crops.append(aligned_crop(rgb, self.pixels(pts), self.cfg.crop_size, self.cfg.crop_margin))

    def pixels(self, pts):
        return pts[:, :2] * (self.width, self.height)


def _result(cfg, span, rows, cnn):
    import numpy as np
    times = np.asarray(span.times, np.float64)
    arrays = {"frame": Seq(np.asarray(span.frames, np.int64), times=times)}
    meta = span.meta()
    searched = list(rows)
    no_face = {}
    for region, r in region_slots(cfg.search, rows).items():
        if r is None:   # the item's own region is the other half: nothing searched here
            arr, step_times = _empty_region(cfg, cnn), np.zeros(0, np.float64)
        else:
            arr, step_times = _region_arrays(r, len(times), cfg, cnn), times
            no_face[r.region] = int(len(times) - arr["found"].sum())
        for name, data in arr.items():
            arrays[prefix(cfg.search, region) + name] = Seq(data, times=step_times)
    searches = len(times) * len(searched)
    meta.update(regions=searched, no_face_frames=no_face,
                no_face_fraction=(sum(no_face.values()) / searches) if searches else None)
    return Result(arrays, meta)


def _region_arrays(rows, n, cfg, cnn):
    import numpy as np
    found = np.array(rows.found, bool).reshape(n)
    landmarks = np.array(rows.landmarks, np.float32).reshape(n, N_LANDMARKS, 3)
    blend = np.array(rows.blendshapes, np.float32).reshape(n, len(BLENDSHAPES))
    box = np.zeros((n, 4), np.float32)
    box[found, :2] = landmarks[found, :, :2].min(axis=1)
    box[found, 2:] = landmarks[found, :, :2].max(axis=1)
    if cfg.embedding == "blendshapes":
        emb = np.zeros((n, len(BLENDSHAPES) + 2 * N_LANDMARKS), np.float32)
        for i in np.flatnonzero(found):
            emb[i] = np.concatenate([blend[i], normalised_geometry(rows.pixels(landmarks[i])).ravel()])
    else:
        from ..cnn import embed_batches
        emb = np.zeros((n, cnn["dim"]), np.float32)
        if rows.crops:
            batch = np.stack(rows.crops).transpose(0, 3, 1, 2)      # (N, 3, H, W) uint8 RGB
            emb[found] = embed_batches(cnn["model"], batch, cnn["device"], cfg.batch_size)
    return {"found": found, "box": box, "landmarks": landmarks, "blendshapes": blend, "embedding": emb}


def _empty_region(cfg, cnn):
    import numpy as np
    dim = len(BLENDSHAPES) + 2 * N_LANDMARKS if cfg.embedding == "blendshapes" else cnn["dim"]
    return {"found": np.zeros(0, bool), "box": np.zeros((0, 4), np.float32),
            "landmarks": np.zeros((0, N_LANDMARKS, 3), np.float32),
            "blendshapes": np.zeros((0, len(BLENDSHAPES)), np.float32),
            "embedding": np.zeros((0, dim), np.float32)}


def eye_roll(points):
    """Angle (degrees) of the line through the outer eye corners, and its length."""
    import numpy as np
    a, b = points[EYE_CORNERS[0]], points[EYE_CORNERS[1]]
    d = b - a
    return float(np.degrees(np.arctan2(d[1], d[0]))), float(np.hypot(d[0], d[1]))


def normalised_geometry(points):
    """(478, 2) pixel landmarks centred on their mean, the eye line turned
    level and the outer eye corners put 1 apart: what is left is shape."""
    import numpy as np
    angle, dist = eye_roll(points)
    theta = np.radians(-angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
    centred = points - points.mean(axis=0)
    return (centred @ rot.T) / max(dist, 1e-6)


def aligned_crop(rgb, points, size, margin):
    """A size x size RGB crop around the face, rotated so the eyes are level."""
    import cv2
    angle, dist = eye_roll(points)
    centre = points.mean(axis=0)
    # Side of the square: the landmarks' extent once level, plus the margin.
    level = normalised_geometry(points) * dist
    side = float((level.max(axis=0) - level.min(axis=0)).max()) * (1 + margin)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, size / max(side, 1.0))
    m[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
