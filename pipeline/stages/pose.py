"""Body keypoints per sampled video frame (MediaPipe Tasks PoseLandmarker).

Sampling defaults to 2 Hz at the window rule's centres (1 s windows, 0.5 s
hop: the steps of the audio stages on those windows), as EMMA-Net uses.

`search` works as in the face stage: `whole` (default) finds one person in
the whole frame, arrays without prefix; `halves` looks for one person in
each half, arrays `left_<name>`/`right_<name>` — the choice for two-person
dialog videos such as IEMOCAP's, where which actor sits on which side is not
documented, so both are kept. An item's own `video.region` restricts the
search to that half.

Arrays per region: found (T,) bool, a person was found; keypoints
(T, 33, 4) x, y, z, visibility for MediaPipe's 33 body landmarks, x and y
as fractions of the whole frame, z relative depth in units of x; zeros where
no person was found. `frame` (T,) is each step's frame index in the file.

Meta: the sampling facts of pipeline/video.py, `regions`, `no_person_frames`
per region and `no_person_fraction` (shown as a mean in the run summary).
"""
from dataclasses import dataclass
from typing import Optional

from ..landmarks import LandmarkerOptions
from ..stage import Result, Seq, Stage
from ..video import FrameSampling, REGION_SETS, VideoSpan, crop_region, prefix, region_slots, regions_for, sampling_of
from . import STAGES

MODEL_FILE = "pose_landmarker_full.task"
N_KEYPOINTS = 33


@dataclass(frozen=True)
class Config(FrameSampling, LandmarkerOptions):
    rate_hz: Optional[float] = 2.0      # steps at the window rule's centres


@STAGES.register()
class Pose(Stage):
    name = "pose"
    version = "1"
    Config = Config
    reads = ("video",)
    batch_items = 16             # ~0.5 s per item at 2 Hz: small tasks keep every worker busy
    summary_meta = ("no_person_fraction",)
    location_options = ("model_path",)     # identity() holds the file's sha256

    def validate(self):
        from ..landmarks import check_confidences, check_model
        cfg = self.config
        sampling_of(cfg).check(self.name)
        check_confidences(cfg, self.name, ("min_detection_confidence", "min_presence_confidence",
                                           "min_tracking_confidence"))
        check_model(cfg.model_path, cfg.model_sha256, MODEL_FILE, self.name)

    def identity(self):
        from ..landmarks import check_model
        cfg = self.config
        return {"model_sha256": check_model(cfg.model_path, cfg.model_sha256, MODEL_FILE, self.name)}

    def shard_attrs(self):
        return {"regions": list(REGION_SETS[self.config.search]),
                "keypoint_columns": ["x", "y", "z", "visibility"]}

    def setup(self):
        from ..landmarks import task_resources
        return task_resources(self.config, MODEL_FILE, self.name, _make_landmarker)

    def compute(self, ctx):
        import cv2
        import numpy as np
        from ..landmarks import Detector
        cfg, res = self.config, self.resources
        span = VideoSpan(ctx.item.video, sampling_of(cfg))
        regions = regions_for(cfg.search, ctx.item.video)
        found = {r: [] for r in regions}
        keypoints = {r: [] for r in regions}
        width = span.info.width
        with Detector(res["make_task"], cfg.running_mode, regions, res.get("task")) as detect:
            for t, frame in span:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                for region in regions:
                    crop, x0 = crop_region(rgb, region)
                    kp = _keypoints(detect(region, crop, t), crop.shape[1], x0, width)
                    found[region].append(kp is not None)
                    keypoints[region].append(np.zeros((N_KEYPOINTS, 4), np.float32) if kp is None else kp)

        times = np.asarray(span.times, np.float64)
        n = len(times)
        arrays = {"frame": Seq(np.asarray(span.frames, np.int64), times=times)}
        missing = {}
        for slot, region in region_slots(cfg.search, {r: r for r in regions}).items():
            steps = n if region else 0
            f = np.array(found[region] if region else [], bool).reshape(steps)
            k = np.array(keypoints[region] if region else [], np.float32).reshape(steps, N_KEYPOINTS, 4)
            arrays[prefix(cfg.search, slot) + "found"] = Seq(f, times=times[:steps])
            arrays[prefix(cfg.search, slot) + "keypoints"] = Seq(k, times=times[:steps])
            if region:
                missing[region] = int(steps - f.sum())
        searches = n * len(regions)
        meta = span.meta()
        meta.update(regions=list(regions), no_person_frames=missing,
                    no_person_fraction=sum(missing.values()) / searches if searches else None)
        return Result(arrays, meta)


def _make_landmarker(cfg, path):
    from mediapipe.tasks.python import BaseOptions, vision
    from ..landmarks import running_mode
    options = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=path), running_mode=running_mode(cfg.running_mode),
        num_poses=1, min_pose_detection_confidence=cfg.min_detection_confidence,
        min_pose_presence_confidence=cfg.min_presence_confidence,
        min_tracking_confidence=cfg.min_tracking_confidence)
    return vision.PoseLandmarker.create_from_options(options)


def _keypoints(result, crop_width, x0, width):
    """(33, 4) x, y, z, visibility in whole-frame fractions, or None without a person."""
    import numpy as np
    if not result.pose_landmarks:
        return None
    kp = np.array([(p.x, p.y, p.z, p.visibility or 0.0) for p in result.pose_landmarks[0]], np.float32)
    kp[:, 0] = (kp[:, 0] * crop_width + x0) / width
    kp[:, 2] *= crop_width / width
    return kp
