"""EMMA-Net (heads/models/emmanet.py) and its per-frame windows (heads/frames.py):
the generic head checks for every fusion variant and loss switch, the
smoothness term, the timeline and windows on a tiny synthetic Aff-Wild2-like
cache, the mean F1 over all classes, and the official train/validation split."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from heads_fake import write_fake_cache
from test_heads_models import check_forward_backward, check_padding_changes_nothing, check_tiny_overfit

from heads.cli import main as heads
from heads.data import collate
from heads.frames import FrameData, Timeline, nearest, to_timeline
from heads.metrics import classification
from heads.models import load_all
from heads.models.emmanet import FUSIONS, smoothness
from heads.protocols import Options, ProtocolError, make_folds
from pipeline.api import Cache
from pipeline.manifest import Item, Media
from pipeline.stage import ConfigError, Result, Seq

EMMANET = load_all()["emmanet"]
# Every fusion with both auxiliary losses, and each loss switch with the paper's fusion.
GRID = [(f, 0.1, 0.1) for f in FUSIONS] + [("attention", 0.0, 0.0), ("attention", 0.1, 0.0),
                                            ("attention", 0.0, 0.1)]


def _config(fusion="attention", rec=0.1, smooth=0.1, **extra):
    return EMMANET.make_config("demo", {"fusion": fusion, "lambda_rec": rec, "lambda_smooth": smooth, **extra})


@pytest.mark.parametrize("fusion,rec,smooth", GRID)
def test_every_fusion_and_loss_switch(fusion, rec, smooth):
    config = _config(fusion, rec, smooth)
    check_forward_backward(EMMANET, config)
    check_padding_changes_nothing(EMMANET, config)


@pytest.mark.parametrize("fusion", [f for f in FUSIONS if f != "attention"])   # attention: test_heads_models
def test_tiny_overfit_every_fusion(fusion, tmp_path):
    check_tiny_overfit(EMMANET, _config(fusion), tmp_path)


@pytest.mark.parametrize("ablation", ["face_only", "no_audio", "no_pose"])
def test_ablations_read_fewer_streams(ablation):
    config = _config(ablation=ablation)
    inputs = EMMANET.inputs(config)
    assert "face" in inputs and ("audio" in inputs) == (ablation == "no_pose")
    check_forward_backward(EMMANET, config)
    assert EMMANET.variant(config) == ablation


def test_variants_and_bad_options():
    assert EMMANET.variant(_config()) == "full"
    assert EMMANET.variant(_config("gating", ablation="no_pose")) == "gating+no_pose"
    for bad in ({"hidden": 33}, {"window": 0}, {"lambda_rec": -1.0}, {"fusion": "sum"}):
        with pytest.raises(ConfigError):
            EMMANET.make_config("paper", bad)
    paper = EMMANET.make_config("paper")
    assert (paper.lr, paper.batch_size, paper.schedule, paper.lr_gamma, paper.window) == (0.02, 4, "plateau", 0.5, 12)


def test_aux_losses_are_in_the_objective():
    torch.manual_seed(0)
    batch = {"id": ["a", "b"], "label": torch.tensor([0, 1]), "face": torch.randn(2, 4, 5),
             "face_mask": torch.ones(2, 4, dtype=torch.bool)}
    for m in ("audio", "pose"):
        batch[m], batch[f"{m}_mask"] = torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool)
    dims = {"face": 5, "audio": 8, "pose": 8}
    off = EMMANET(_config(rec=0.0, smooth=0.0), dims, 8)
    logits = off(batch)
    assert off.aux_losses == {}
    assert torch.isclose(off.loss(logits, batch), torch.nn.functional.cross_entropy(logits, batch["label"]))
    on = EMMANET(_config(), dims, 8)
    logits = on(batch)
    assert set(on.aux_losses) == {"rec", "smooth"} and all(v > 0 for v in on.aux_losses.values())
    ce = torch.nn.functional.cross_entropy(logits, batch["label"])
    assert torch.isclose(on.loss(logits, batch), ce + on.aux_losses["rec"] + on.aux_losses["smooth"])


def test_smoothness_zero_when_constant_and_the_l1_sum_otherwise():
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    constant = torch.tensor([0.2, 0.3, 0.5]).expand(2, 4, 3)
    assert smoothness(constant, mask) == 0
    probs = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
                          [[0.2, 0.8, 0.0], [0.8, 0.2, 0.0], [0.8, 0.0, 0.2], [9.0, 9.0, 9.0]]])
    # Item 0: |(-.5, .5, 0)| + 0 + |(-.5, -.5, 1)| = 1 + 0 + 2 = 3.
    # Item 1: |(.6, -.6, 0)| + |(0, -.2, .2)| = 1.2 + 0.4 = 1.6; its padded step does not count.
    assert smoothness(probs, mask).item() == pytest.approx((3.0 + 1.6) / 2)


# --- the timeline and the windows ----------------------------------------------

def test_timeline_means_fills_and_nearest():
    values = np.array([[1.0], [3.0], [10.0], [7.0], [100.0]])
    times = np.array([0.1, 0.4, 0.6, 1.7, 9.0])
    usable = np.array([True, True, True, True, False])
    out = to_timeline(values, times, 4, 0.5, usable)
    # Step 0: mean(1, 3); step 1: 10; step 2: none, nearest steps 1 and 3 tie -> the earlier; step 3: 7.
    assert out[:, 0].tolist() == [2.0, 10.0, 10.0, 7.0]
    assert to_timeline(values, times, 2, 0.5)[:, 0].tolist() == [2.0, 39.0]   # past the end: the last step
    with pytest.raises(ValueError, match="no usable steps"):
        to_timeline(values, times, 4, 0.5, np.zeros(5, bool))
    assert nearest(np.array([2, 4, 10]), np.array([0, 3, 7, 8, 20])).tolist() == [0, 0, 1, 2, 2]
    assert nearest(np.array([5]), np.array([0, 9])).tolist() == [0, 0]


FPS, FRAMES = 10.0, 40
FACE_LOST = {"A": (10, 12, 26, 28), "B": (), "C": tuple(range(0, FRAMES, 2)), "D": ()}
STAGES = {"face@emmanet": {"embedding": ("seq", 3)}, "pose@emmanet": {"keypoints": ("seq", 8)},
          "opensmile@egemaps_2hz": {"functionals": ("seq", 1)}}


def _labels(name):
    labels = [(f // 10) % 8 for f in range(FRAMES)]
    for f in (0, 1, 2, 20):
        labels[f] = -1
    return [-1] * FRAMES if name == "D" else labels


def _items():
    return [Item(id=name, corpus="affwild2", video=Media(f"/nonexistent/{name}.mp4"),
                 audio=Media(f"/nonexistent/{name}.mp4"), speaker=name, session=name,
                 labels={"expression": _labels(name)}, split="validation" if name == "B" else "train",
                 extra={"fps": FPS, "annotated_frames": FRAMES, "video_frames": FRAMES, "frame_drift": 0})
            for name in "ABCD"]


def _result(item, arrays, rng, signal):
    """Face every 2nd frame (embedding = [frame, 0, 1], lost on FACE_LOST);
    audio at 0.5 s, 1.0 s, ... (value = time); pose at 2 Hz, never found."""
    if "embedding" in arrays:
        frames = np.arange(0, FRAMES, 2)
        times = frames / FPS
        found = ~np.isin(frames, FACE_LOST[item.id])
        emb = np.stack([frames, np.zeros(len(frames)), np.ones(len(frames))], 1) * found[:, None]
        return Result({"frame": Seq(frames, times=times), "found": Seq(found, times=times),
                       "embedding": Seq(emb.astype(np.float32), times=times)}, {})
    if "functionals" in arrays:
        times = 0.5 * np.arange(1, 9)
        return Result({"functionals": Seq(times[:, None].astype(np.float32), times=times)}, {})
    times = 0.25 + 0.5 * np.arange(8)
    return Result({"found": Seq(np.zeros(8, bool), times=times),
                   "keypoints": Seq(np.full((8, 2, 4), 0.5, np.float32), times=times)}, {})


@pytest.fixture(scope="module")
def frame_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("emmanet_cache")
    write_fake_cache(d, _items(), STAGES, dataset="affwild2", result=_result)
    return d


def _data(cache_dir, steps=3, every=4):
    config = _config(audio_stage="opensmile@egemaps_2hz", audio_array="functionals")
    timeline = Timeline(step_s=0.5, steps=steps, train_every=every)
    return FrameData(Cache(cache_dir), "affwild2", EMMANET.inputs(config), "8class", timeline)


def test_items_on_the_timeline(frame_cache):
    data = _data(frame_cache)
    # C never shows a face: kept (every labelled frame is scored), its face
    # steps as stored; D has no labelled frame. A's lost faces (10, 12, 26,
    # 28) are the nearest sampled frame of 8 labelled frames.
    assert data.ids == ["A", "B", "C"] and data.dropped == {}
    assert data.no_face == {"A": (8, False), "C": (36, True)}
    assert np.all(data.frames("C").streams["face"] == 0)
    face = data.frames("A").streams["face"][:, 0]
    # Steps of 5 frames: means of the found sampled frames; step 5 (26, 28 lost) takes step 4 (tie).
    assert face.tolist() == [2, 7, 14, 17, 22, 22, 32, 37]
    audio = data.frames("A").streams["audio"][:, 0]
    assert audio.tolist() == [0.5, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.75]
    # Pose was never found: its steps are read as stored.
    assert np.all(data.frames("A").streams["pose"] == 0.5)
    assert data.dims() == {"face": 3, "audio": 1, "pose": 8}


def test_windows_targets_and_current_face(frame_cache):
    data = _data(frame_cache)
    test = data.subset(["A", "B"])
    labelled = [f for f in range(FRAMES) if f not in (0, 1, 2, 20)]
    assert [e for e in test.examples if e[0] == "A"] == [("A", f) for f in labelled]
    window = test[test.examples.index(("A", 27))]
    assert window["id"] == "A@27" and window["label"] == 2 and data.item_of(window["id"]) == "A"
    # Frame 27 is in step 5: steps 3..5; the last face step is the sampled
    # frame nearest 27 where a face was found (24 and 30 tie: the earlier).
    assert window["face"][:, 0].tolist() == [17, 22, 24]
    assert window["audio"][:, 0].tolist() == [1.5, 2.0, 2.5]
    first = test[test.examples.index(("A", 3))]
    assert first["face"][:, 0].tolist() == [2] and len(first["audio"]) == 1
    # The item's own stream is not changed by cutting a window.
    assert data.frames("A").streams["face"][5, 0] == 22
    train = data.subset(["A"], train=True)
    assert train.examples == [("A", f) for f in labelled[::4]]
    batch = collate([test[0], test[10], test[20]])
    assert batch["face"].shape == (3, 3, 3) and batch["face_mask"].sum(1).tolist() == [1, 3, 3]


def test_heads_train_end_to_end_on_windows(frame_cache, tmp_path):
    out = tmp_path / "run"
    rc = heads(["train", "--model", "emmanet", "--cache", str(frame_cache), "--protocol", "official",
                "--preset", "demo", "--set", "audio_stage='opensmile@egemaps_2hz'",
                "--set", "audio_array='functionals'", "--set", "epochs=2", "--out", str(out), "--quiet"])
    assert rc == 0
    record = json.loads((out / "results.json").read_text())
    run = record["runs"][0]
    assert record["dropped_items"] == {} and run["sizes"] == {"train": 2, "dev": 0, "test": 1}
    assert len(run["predictions"]) == 36 and all(i.startswith("B@") for i in run["predictions"])
    assert run["selected_on"] == "last epoch (no dev part)" and "mf1_all" in record["overall"]
    assert heads(["evaluate", str(out), "--cache", str(frame_cache)]) == 0


# --- the per-frame measure and the official split ---------------------------------

def test_mean_f1_over_all_classes():
    classes = list("abcd")
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = classification(y_true, y_pred, classes)
    # F1 by hand: a: p 1/2, r 1/2 -> 1/2; b: p 2/3, r 1 -> 4/5; c: p 1, r 1/2 -> 2/3; d: never seen -> 0.
    assert m["mf1_all"] == pytest.approx((0.5 + 0.8 + 2 / 3 + 0.0) / 4)
    assert m["mf1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 8, 500), rng.integers(0, 7, 500)
    got = classification(t, p, list(range(8)))["mf1_all"]
    assert got == pytest.approx(skm.f1_score(t, p, labels=list(range(8)), average="macro", zero_division=0))


def test_official_split_without_a_test_part_scores_the_validation_part():
    items = [dataclasses.replace(it, split="validation" if it.id == "A" else "train") for it in _items()]
    (fold,), _ = make_folds("official", items)
    assert fold.test == ["A"] and fold.dev == [] and fold.train == ["B", "C", "D"]
    (fold,), _ = make_folds("official", items, Options(dev="next-session"))
    assert fold.test == ["A"] and fold.dev == ["B"] and fold.train == ["C", "D"]
    tagged = [dataclasses.replace(it, split={"A": "test", "B": "dev"}.get(it.id, "train")) for it in items]
    with pytest.raises(ProtocolError, match="own dev part"):
        make_folds("official", tagged, Options(dev="next-session"))


# --- the paper's scoring and dev part ------------------------------------------

def test_a_video_without_any_face_is_scored_on_every_labelled_frame(tmp_path, capsys):
    """ABAW scores every labelled validation frame: C (no face ever found)
    is in the validation part, and each of its labelled frames gets a
    prediction that enters the mean F1; the run says how many had no face."""
    items = [dataclasses.replace(it, split="validation" if it.id in "BC" else "train") for it in _items()]
    cache_dir = tmp_path / "cache"
    write_fake_cache(cache_dir, items, STAGES, dataset="affwild2", result=_result)
    out = tmp_path / "run"
    rc = heads(["train", "--model", "emmanet", "--cache", str(cache_dir), "--protocol", "official",
                "--preset", "demo", "--set", "audio_stage='opensmile@egemaps_2hz'",
                "--set", "audio_array='functionals'", "--set", "epochs=1", "--out", str(out), "--quiet"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "validation: 36 of 72 labelled frame(s) in 1 item(s) had no face found (1 item(s) none at all: C)" in err
    assert "train: 8 of 36 labelled frame(s) in 1 item(s) had no face found (0 item(s) none at all)" in err
    record = json.loads((out / "results.json").read_text())
    run = record["runs"][0]
    scored = [i for i in run["predictions"] if i.startswith("C@")]
    assert len(scored) == 36 and len(run["predictions"]) == 72 and record["dropped_items"] == {}
    # The mean F1 counts C's frames: its confusion matrix holds all 72 scored frames.
    assert np.asarray(run["metrics"]["confusion"]).sum() == 72


def _videos(n_train, n_val=2):
    return [Item(id=f"v{i}", corpus="affwild2", video=Media(f"/nonexistent/v{i}.mp4"), speaker=f"v{i}",
                 session=f"v{i}", split="train" if i < n_train else "validation")
            for i in range(n_train + n_val)]


@pytest.mark.parametrize("n_train,n_dev", [(2, 1), (3, 1), (4, 2), (9, 2), (20, 4)])
def test_session_share_dev_is_whole_training_videos(n_train, n_dev):
    """--dev session-share: a fifth of the training videos (at least two
    when there are four or more), whole, never a validation (scored) one."""
    items = _videos(n_train)
    by_id = {it.id: it for it in items}
    for seed in (0, 1):
        (fold,), reports = make_folds("official", items, Options(dev="session-share", seed=seed))
        dev_videos = {by_id[i].session for i in fold.dev}
        assert len(dev_videos) == n_dev and all(by_id[i].split == "train" for i in fold.dev)
        assert not dev_videos & {by_id[i].session for i in fold.train} and reports[0]["ok"]
        assert set(fold.test) == {f"v{n_train}", f"v{n_train + 1}"}
    with pytest.raises(ProtocolError, match="at least 2 training sessions"):
        make_folds("official", _videos(1), Options(dev="session-share"))


def test_paper_preset_reads_the_expression_face_network_and_the_demo_mediapipe():
    assert EMMANET.make_config("paper").face_stage == "face@emmanet_expr"
    assert EMMANET.make_config("demo").face_stage == "face@emmanet"
    from pipeline.presets import named_configs
    stage, options, _ = named_configs()["face@emmanet_expr"]
    assert stage == "face" and options["embedding"] == "expression" and options["every"] == 5
