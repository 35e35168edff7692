"""The face stage (MediaPipe FaceLandmarker) on two-person dialog frames.

The videos are made with the demo generator's people (a real photo, faces
~64-72 px wide in a 720x480 frame, as in IEMOCAP), each stepping out of the
picture for known frames, so detections can be checked frame by frame.
"""
import shutil

import numpy as np
import pytest

from pipeline.context import ItemContext
from pipeline.demo import video as vid
from pipeline.landmarks import PINNED_SHA256, packaged_model
from pipeline.manifest import Item, Media
from pipeline.stage import ConfigError, ItemError, make_config
from pipeline.stages import load_all
from pipeline.stages.face import (BLENDSHAPES, EYE_CORNERS, N_LANDMARKS, aligned_crop, eye_roll,
                                  normalised_geometry)

N_FRAMES = 90
AWAY = {"left": (30, 45), "right": (60, 90)}   # frames [a, b) each person is out of the picture


def two_people(path, n_frames=N_FRAMES, away=AWAY):
    left, right = vid.people()
    tracks = {"left": vid.Track(left, 180 - left.size[0] // 2, 120, away=(away["left"],)),
              "right": vid.Track(right, 540 - right.size[0] // 2, 110, away=(away["right"],))}
    vid.write_video(path, n_frames, list(tracks.values()))
    return str(path), tracks


@pytest.fixture(scope="module")
def dialog(tmp_path_factory):
    return two_people(tmp_path_factory.mktemp("face") / "dialog.avi")


def stage(**options):
    cls = load_all()["face"]
    s = cls(make_config(cls, options))
    s.validate()
    return s


def run(s, path, start=None, end=None, region=None):
    item = Item("u1", "test", video=Media(path, start, end, region))
    return s.compute(ItemContext(item, {}))


@pytest.fixture(scope="module")
def halves(dialog):
    return run(stage(every=3), dialog[0])


def in_view(frames, side):
    a, b = AWAY[side]
    return ~((frames >= a) & (frames < b))


def test_halves_find_each_face_exactly_when_in_view(halves):
    r = halves
    frames = r.arrays["frame"].data
    assert list(frames) == list(range(0, N_FRAMES, 3))
    for side in ("left", "right"):
        found = r.arrays[f"{side}_found"].data
        shown = in_view(frames, side)
        assert found[shown].mean() >= 0.9, side
        assert not found[~shown].any(), side
    n_absent = sum(int((~in_view(frames, s)).sum()) for s in ("left", "right"))
    missed = sum(int((~r.arrays[f"{s}_found"].data & in_view(frames, s)).sum()) for s in ("left", "right"))
    assert r.meta["no_face_fraction"] == pytest.approx((n_absent + missed) / (2 * len(frames)))
    assert r.meta["regions"] == ["left", "right"]


def test_shapes_and_values(halves, dialog):
    r = halves
    _, tracks = dialog
    t = len(r.arrays["frame"].data)
    for side in ("left", "right"):
        a = {k: r.arrays[f"{side}_{k}"].data for k in ("found", "box", "landmarks", "blendshapes", "embedding")}
        assert a["landmarks"].shape == (t, N_LANDMARKS, 3) and a["blendshapes"].shape == (t, len(BLENDSHAPES))
        assert a["embedding"].shape == (t, len(BLENDSHAPES) + 2 * N_LANDMARKS) and a["box"].shape == (t, 4)
        f = a["found"]
        assert not a["landmarks"][~f].any() and not a["embedding"][~f].any()
        assert np.isfinite(a["embedding"]).all() and (a["blendshapes"][f] >= 0).all()
        # Landmarks are fractions of the whole frame and lie on the face the generator drew.
        x, y, w, h = tracks[side].face_box()
        centre = a["box"][f].reshape(-1, 2, 2).mean(axis=1) * (vid.WIDTH, vid.HEIGHT)
        assert np.abs(centre - (x + w / 2, y + h / 2)).max() < 0.5 * w, side
        half = slice(0, 0.5) if side == "left" else slice(0.5, 1.0)
        assert (a["landmarks"][f, :, 0] >= half.start).all() and (a["landmarks"][f, :, 0] <= half.stop).all()
    assert np.allclose(r.arrays["frame"].times, r.arrays["frame"].data / r.meta["fps"])


def test_blendshape_names_match_the_model(dialog):
    import cv2
    from mediapipe.tasks.python import BaseOptions, vision
    from pipeline.landmarks import mp_image
    cap = cv2.VideoCapture(dialog[0])
    ok, frame = cap.read()
    cap.release()
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=packaged_model("face_landmarker.task")),
        output_face_blendshapes=True)
    with vision.FaceLandmarker.create_from_options(options) as task:
        result = task.detect(mp_image(cv2.cvtColor(frame[:, :360], cv2.COLOR_BGR2RGB)))
    assert tuple(c.category_name for c in result.face_blendshapes[0]) == BLENDSHAPES


def test_whole_frame_search_misses_small_faces_the_halves_find(halves, dialog):
    whole = run(stage(every=3, search="whole"), dialog[0])
    assert set(whole.arrays) == {"frame", "found", "box", "landmarks", "blendshapes", "embedding"}
    r = halves
    assert whole.arrays["found"].data.sum() < r.arrays["left_found"].data.sum()


def test_item_region_selects_one_half(dialog):
    s = stage(every=3)
    r = run(s, dialog[0], 0.0, 1.0, region="right")
    assert len(r.arrays["left_found"].data) == 0 and len(r.arrays["left_landmarks"].data) == 0
    assert r.arrays["right_found"].data.all()
    assert r.meta["regions"] == ["right"] and r.meta["no_face_fraction"] == 0.0
    whole = run(stage(every=3, search="whole"), dialog[0], 0.0, 1.0, region="left")
    assert whole.arrays["found"].data.all()
    assert (whole.arrays["landmarks"].data[:, :, 0] < 0.5).all()


def test_video_mode_tracks_the_same_faces(dialog):
    r = run(stage(every=3, running_mode="video"), dialog[0])
    for side in ("left", "right"):
        shown = in_view(r.arrays["frame"].data, side)
        assert r.arrays[f"{side}_found"].data[shown].mean() >= 0.9
        assert not r.arrays[f"{side}_found"].data[~shown].any()


def test_cnn_embedding_of_aligned_crops(dialog):
    r = run(stage(every=10, embedding="cnn", weights="random", seed=0, crop_size=64), dialog[0], 0.9, 1.6)
    f = r.arrays["left_found"].data
    emb = r.arrays["left_embedding"].data
    assert emb.shape == (len(f), 512) and f.any() and (~f).any()
    assert np.abs(emb[f]).sum(axis=1).min() > 0 and not emb[~f].any()


def test_geometry_is_free_of_position_size_and_roll():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(N_LANDMARKS, 2)).astype(np.float32) * 20 + 100
    pts[EYE_CORNERS[0]], pts[EYE_CORNERS[1]] = (80, 90), (120, 90)
    angle = np.radians(17)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    moved = (pts - 100) @ rot.T * 2.5 + (300, 40)
    assert np.allclose(normalised_geometry(pts), normalised_geometry(moved), atol=1e-4)
    g = normalised_geometry(moved)
    assert abs(g[EYE_CORNERS[0], 1] - g[EYE_CORNERS[1], 1]) < 1e-4
    assert np.hypot(*(g[EYE_CORNERS[1]] - g[EYE_CORNERS[0]])) == pytest.approx(1.0, abs=1e-4)


def test_aligned_crop_levels_the_eyes():
    import cv2
    image = np.zeros((200, 300, 3), np.uint8)
    # Two bright eye dots on a tilted line, the other landmarks around them.
    a, b = np.array([120.0, 90.0]), np.array([170.0, 110.0])
    cv2.circle(image, tuple(int(v) for v in a), 3, (255, 0, 0), -1)
    cv2.circle(image, tuple(int(v) for v in b), 3, (0, 255, 0), -1)
    pts = np.tile((a + b) / 2, (N_LANDMARKS, 1)) + np.random.default_rng(1).normal(size=(N_LANDMARKS, 2)) * 15
    pts[EYE_CORNERS[0]], pts[EYE_CORNERS[1]] = a, b
    assert eye_roll(pts)[0] > 20
    crop = aligned_crop(image, pts.astype(np.float32), 64, 0.25)
    assert crop.shape == (64, 64, 3)
    ya = np.argwhere(crop[:, :, 0] > 100)[:, 0].mean()
    yb = np.argwhere(crop[:, :, 1] > 100)[:, 0].mean()
    assert abs(ya - yb) < 2


def test_missing_video_is_an_item_error(tmp_path):
    with pytest.raises(ItemError, match="not found"):
        run(stage(), str(tmp_path / "missing.avi"))


def test_model_checksum_and_path_are_checked_before_work(tmp_path):
    cls = load_all()["face"]
    with pytest.raises(ConfigError, match="model file not found"):
        cls(make_config(cls, {"model_path": str(tmp_path / "none.task")})).validate()
    # A copy of the packaged model: same digest, same identity; a changed file: another key.
    copy = tmp_path / "face.task"
    shutil.copy(packaged_model("face_landmarker.task"), copy)
    assert stage(model_path=str(copy)).identity() == stage().identity()
    assert stage().identity()["model_sha256"] == PINNED_SHA256["face_landmarker.task"]
    with open(copy, "ab") as f:
        f.write(b"\0")
    assert stage(model_path=str(copy)).identity() != stage().identity()
    with pytest.raises(ConfigError, match="sha256"):
        stage(model_path=str(copy), model_sha256=PINNED_SHA256["face_landmarker.task"])


def test_bad_options_fail_before_work():
    cls = load_all()["face"]
    with pytest.raises(ConfigError, match="search"):
        make_config(cls, {"search": "thirds"})
    with pytest.raises(ConfigError, match="every"):
        cls(make_config(cls, {"every": 0})).validate()
    with pytest.raises(ConfigError, match="min_detection_confidence"):
        cls(make_config(cls, {"min_detection_confidence": 1.5})).validate()
    with pytest.raises(ConfigError, match="seed"):
        cls(make_config(cls, {"embedding": "cnn", "weights": "random"})).validate()


# --- end to end on the demo corpus: face, pose and frames from the dialog AVIs ---

@pytest.fixture(scope="module")
def demo(demo_root, demo_truth):
    return demo_root, demo_truth


# Sparse sampling keeps this quick; the unit tests above cover the defaults.
SETTINGS = ("face.every=15", "pose.rate_hz=1.0", "frames.weights=random", "frames.seed=0",
            "frames.size=32", "frames.every=30")
VISION = ("--stages", "face,pose,frames", *[a for s in SETTINGS for a in ("--set", s)])


def load(cache, label):
    from pipeline.api import Cache
    from pipeline.options import parse_set
    return Cache(cache).load(label, overrides=parse_set(SETTINGS))


@pytest.fixture(scope="module")
def extracted(demo, tmp_path_factory):
    from tests.helpers import extract
    root, _ = demo
    cache = tmp_path_factory.mktemp("vision_cache")
    assert extract(root, cache, *VISION, dataset="iemocap") == 0
    return cache


def test_demo_faces_found_exactly_where_the_generator_put_them(demo, extracted):
    _, truth = demo
    feats = load(extracted, "face")
    assert len(feats) == len(truth["items"]) - len(truth.get("quirks") or {})
    hits = {"left": [0, 0], "right": [0, 0]}
    for item_id, f in feats.items():
        faces = truth["dialogs"][truth["items"][item_id]["dialog"]]["video"]["faces"]
        frames = f.arrays["frame"]
        for side in ("left", "right"):
            shown = np.zeros(len(frames), bool)
            for a, b in faces[side]["in_view_frames"]:
                shown |= (frames >= a) & (frames < b)
            found = f.arrays[f"{side}_found"].astype(bool)
            assert not found[~shown].any(), (item_id, side)     # never a face where none is shown
            hits[side][0] += int(found[shown].sum())
            hits[side][1] += int(shown.sum())
        assert 0.0 <= f.meta["no_face_fraction"] <= 1.0
    for side, (n_found, n_shown) in hits.items():
        assert n_shown > 0 and n_found / n_shown >= 0.9, (side, n_found, n_shown)


def test_demo_pose_and_frames_cover_each_utterance_span(demo, extracted):
    import math
    from pipeline.windows import time_windows
    _, truth = demo
    face, pose, frames = (load(extracted, label) for label in ("face", "pose", "frames"))
    # Someone is always in view; with two people a whole-frame search now and then finds neither.
    assert np.mean([p.meta["no_person_fraction"] for p in pose.values()]) <= 0.1
    for item_id, p in pose.items():
        t = truth["items"][item_id]
        fps = p.meta["fps"]
        assert np.allclose(p.times["keypoints"], time_windows(t["end"] - t["start"], 1.0, 1.0))
        assert p.arrays["keypoints"].shape[1:] == (33, 4)
        first = math.ceil(t["start"] * fps - 1e-6)
        assert face[item_id].arrays["frame"][0] == first
        assert list(frames[item_id].arrays["frame"]) == list(range(first, math.ceil(t["end"] * fps - 1e-6), 30))
        assert frames[item_id].arrays["embedding"].shape[1] == 512
        assert not p.meta["truncated"]


def _expression_file(path, seed, arch="resnet18"):
    """A user's expression network: a torchvision backbone with an 8-class
    head, saved as DataParallel would (`module.` prefix, under state_dict)."""
    import torch
    import torchvision
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(num_classes=8)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return str(path)


def test_expression_network_embeds_aligned_crops_from_the_users_file(dialog, tmp_path):
    def embed(path):
        s = stage(every=10, embedding="expression", weights="affectnet_resnet18", weights_path=path,
                  crop_size=64)
        return run(s, dialog[0], 0.9, 1.6), s.identity()["expression"]

    r, ident = embed(_expression_file(tmp_path / "a.pth", 0))
    f, emb = r.arrays["left_found"].data, r.arrays["left_embedding"].data
    assert emb.shape == (len(f), 512) and f.any() and (~f).any()
    assert np.abs(emb[f]).sum(axis=1).min() > 0 and not emb[~f].any()
    # The file is what is read: other weights, other embeddings and another cache key.
    other, other_ident = embed(_expression_file(tmp_path / "b.pth", 1))
    assert not np.allclose(other.arrays["left_embedding"].data[f], emb[f])
    assert ident["expression_net"] == "affectnet_resnet18" and ident != other_ident


def test_expression_network_absent_or_wrong_is_a_config_error_naming_it(tmp_path):
    from pipeline.graph import resolve
    from pipeline.stages.face_net import load_expression_net
    cls = load_all()["face"]
    with pytest.raises(ConfigError, match=r"face network affectnet_resnet50 is not on this machine.*resnet50 "
                                          r"state dict.*weights_path=<file>"):
        resolve(["face@emmanet_expr"], {"face@emmanet_expr": {"weights_path": str(tmp_path / "none.pth")}})
    with pytest.raises(ConfigError, match="not a known face network"):
        cls(make_config(cls, {"embedding": "expression", "weights": "fan"})).validate()
    config = make_config(cls, {"embedding": "expression", "weights": "affectnet_resnet50",
                               "weights_path": _expression_file(tmp_path / "r18.pth", 0)})
    with pytest.raises(ConfigError, match="does not fit a resnet50"):
        load_expression_net(config, "cpu")
