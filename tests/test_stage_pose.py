"""The pose stage (MediaPipe PoseLandmarker) on two-person dialog frames."""
import numpy as np
import pytest

from pipeline.context import ItemContext
from pipeline.demo import video as vid
from pipeline.landmarks import PINNED_SHA256
from pipeline.manifest import Item, Media
from pipeline.stage import ConfigError, ItemError, make_config
from pipeline.stages import load_all
from pipeline.stages.pose import N_KEYPOINTS
from pipeline.windows import time_windows

FPS = vid.FPS
N_FRAMES = 150                      # 5 s
AWAY = {"left": (45, 75), "right": (105, 150)}


@pytest.fixture(scope="module")
def dialog(tmp_path_factory):
    path = tmp_path_factory.mktemp("pose") / "dialog.avi"
    left, right = vid.people()
    vid.write_video(path, N_FRAMES, [vid.Track(left, 90, 120, away=(AWAY["left"],)),
                                     vid.Track(right, 450, 110, away=(AWAY["right"],))])
    return str(path)


def stage(**options):
    cls = load_all()["pose"]
    s = cls(make_config(cls, options))
    s.validate()
    return s


def run(s, path, start=None, end=None, region=None):
    return s.compute(ItemContext(Item("u1", "test", video=Media(path, start, end, region)), {}))


def shown(frames, side):
    a, b = AWAY[side]
    return ~((frames >= a) & (frames < b))


def test_two_hertz_on_the_window_rule_whole_frame(dialog):
    r = run(stage(), dialog, 0.2, 4.7)
    times = r.arrays["frame"].times
    assert np.allclose(times, time_windows(4.5, 1.0, 0.5))          # 1 s windows, 0.5 s hop
    assert np.allclose(np.diff(times), 0.5)
    kp = r.arrays["keypoints"].data
    assert kp.shape == (len(times), N_KEYPOINTS, 4) and kp.dtype == np.float32
    assert r.arrays["found"].data.all()          # someone is always in the picture
    assert r.meta["no_person_fraction"] == 0.0
    f = r.arrays["found"].data
    assert (kp[f, :, 3] >= 0).all() and (kp[f, :, 3] <= 1).all()   # visibility


def test_halves_mask_frames_without_a_person(dialog):
    r = run(stage(search="halves"), dialog)
    frames = r.arrays["frame"].data
    for side in ("left", "right"):
        found = r.arrays[f"{side}_found"].data
        kp = r.arrays[f"{side}_keypoints"].data
        assert found[shown(frames, side)].mean() >= 0.9, side
        assert not found[~shown(frames, side)].any(), side
        assert not kp[~found].any()
        # Keypoints of each person lie in their own half (as fractions of the whole frame).
        nose_x = kp[found, 0, 0]
        assert ((nose_x < 0.5) if side == "left" else (nose_x > 0.5)).all(), side
    expected = sum(int((~r.arrays[f"{s}_found"].data).sum()) for s in ("left", "right")) / (2 * len(frames))
    assert r.meta["no_person_fraction"] == pytest.approx(expected) and expected > 0


def test_item_region_and_every_kth(dialog):
    r = run(stage(search="halves", rate_hz=None, every=15), dialog, 0.0, 2.0, region="left")
    assert len(r.arrays["right_found"].data) == 0
    assert list(r.arrays["frame"].data) == list(range(0, 60, 15))
    assert r.meta["regions"] == ["left"]


def test_errors(tmp_path):
    with pytest.raises(ItemError, match="not found"):
        run(stage(), str(tmp_path / "none.avi"))
    cls = load_all()["pose"]
    with pytest.raises(ConfigError, match="sha256"):
        cls(make_config(cls, {"model_sha256": "f" * 64})).validate()
    assert stage().identity() == {"model_sha256": PINNED_SHA256["pose_landmarker_full.task"]}
