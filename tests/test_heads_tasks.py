"""Tasks (heads/tasks.py): CMU-MOSEI sentiment regression and its metrics
(both ACC-2 conventions, ACC-7, MAE, Pearson r) against hand-computed values,
scikit-learn and scipy; label sets over a score; a regression head trained,
reported and evaluated on a small synthetic MOSEI-like cache; bad option
combinations refused before any work; the official splits of MOSEI and MELD."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from heads_fake import write_fake_cache
from scipy import stats
from sklearn import metrics as skm

from heads import tasks
from heads.cli import main
from heads.metrics import aggregate, pearson, regression, regression_summary
from heads.protocols import make_folds
from pipeline import labels
from pipeline.manifest import Item, Media
from pipeline.stage import ConfigError

# --- metrics -------------------------------------------------------------------

T = [-2.2, -0.4, 0.0, 0.0, 0.6, 1.5, 3.4]
P = [-1.8, 0.3, -0.2, 0.0, 0.4, 2.5, 2.0]


def test_regression_metrics_by_hand():
    m = regression(T, P, -3, 3)
    assert m["mae"] == pytest.approx((0.4 + 0.7 + 0.2 + 0 + 0.2 + 1.0 + 1.4) / 7)
    # Negative vs non-negative: the two zeros count as non-negative; P's -0.2
    # is wrong (negative), 0.3 for -0.4 is wrong (non-negative): 5 of 7.
    assert m["acc2"] == pytest.approx(5 / 7)
    # Below: 2 items, 1 right (p = r = 1/2); above: 5 items, 4 right (p = r = 4/5).
    assert m["f1_2"] == pytest.approx((2 * 0.5 + 5 * 0.8) / 7)
    # Zeros left out: -2.2, -0.4, 0.6, 1.5, 3.4 against -1.8, 0.3, 0.4, 2.5, 2.0: 4 of 5.
    assert m["acc2_nonzero"] == pytest.approx(4 / 5)
    # Rounded and clipped: T -> -2, 0, 0, 0, 1, 2 (1.5: half to even), 3 (clipped);
    # P -> -2, 0, 0, 0, 0, 2 (2.5: half to even), 2: 5 of 7.
    assert m["acc7"] == pytest.approx(5 / 7)
    assert m["support"] == {"-3": 0, "-2": 1, "-1": 0, "0": 3, "1": 1, "2": 1, "3": 1}
    assert np.asarray(m["confusion"]).sum() == 7 and m["confusion"][6][5] == 1
    assert set(regression_summary(-3, 3)) <= set(m)


def test_pearson_by_hand():
    # Deviations (-1, 0, 1) and (-7/3, -1/3, 8/3): covariance sum 5, squares 2 and 114/9.
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / np.sqrt(2 * 114 / 9))
    assert pearson([1, 2, 3], [5, 5, 5]) == 0.0          # constant predictions: no linear relation


def test_rounding_halves_to_even_and_clipping():
    assert labels.round_clip([-3.6, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.51, 9.0], -3, 3).tolist() == \
        [-3, -2, -2, 0, 0, 2, 2, 3, 3]


@pytest.mark.parametrize("seed", range(4))
def test_regression_metrics_against_sklearn_and_scipy(seed):
    rng = np.random.default_rng(seed)
    t = np.round(rng.uniform(-3.5, 3.5, 300) * 3) / 3           # thirds, as annotator means; some zeros
    t[:10] = 0.0
    p = np.clip(t + rng.normal(0, 1.0, 300), -4, 4)
    m = regression(t, p, -3, 3)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(t, p))
    assert m["corr"] == pytest.approx(stats.pearsonr(t, p)[0])
    assert m["acc2"] == pytest.approx(skm.accuracy_score(t >= 0, p >= 0))
    assert m["f1_2"] == pytest.approx(skm.f1_score(t >= 0, p >= 0, average="weighted"))
    nz = t != 0
    assert m["acc2_nonzero"] == pytest.approx(skm.accuracy_score(t[nz] > 0, p[nz] > 0))
    assert m["f1_2_nonzero"] == pytest.approx(skm.f1_score(t[nz] > 0, p[nz] > 0, average="weighted"))
    assert m["acc7"] == pytest.approx(skm.accuracy_score(np.round(np.clip(t, -3, 3)), np.round(np.clip(p, -3, 3))))


def test_aggregate_regression_runs():
    runs = [{"seed": 0, "fold": "official", "metrics": regression(T, P, -3, 3)},
            {"seed": 1, "fold": "official", "metrics": regression(T, T, -3, 3)}]
    out = aggregate(runs, [str(k) for k in range(-3, 4)], regression_summary(-3, 3))
    assert out["mae"]["mean"] == pytest.approx(regression(T, P, -3, 3)["mae"] / 2)
    assert out["acc7"]["per_seed"] == pytest.approx({"0": 5 / 7, "1": 1.0})
    assert np.asarray(out["confusion"]).sum() == 14


# --- label sets and tasks ------------------------------------------------------------

def _mosei_item(score):
    return Item(id="v___1", corpus="mosei", labels={"sentiment": score})


@pytest.mark.parametrize("score,expected", [
    (-0.4, (-0.4, "0", "negative", "negative")),
    (0.0, (0.0, "0", "non-negative", None)),          # zeros: non-negative, or left out
    (2.5, (2.5, "2", "non-negative", "positive")),
    (-3.3, (-3.3, "-3", "negative", "negative")),
    (float("nan"), (None, None, None, None)),
    (None, (None, None, None, None)),
])
def test_mosei_label_sets(score, expected):
    got = tuple(labels.apply(_mosei_item(score), name) for name in ("sentiment", "7class", "2class", "2class_nonzero"))
    assert got == expected
    assert labels.kind("mosei", "sentiment") == "regression" and labels.kind("mosei", "7class") == "classification"
    assert labels.classes("mosei", "7class") == ["-3", "-2", "-1", "0", "1", "2", "3"]


def test_tasks_from_label_sets():
    reg = tasks.for_labelset("mosei", "sentiment")
    assert (reg.kind, reg.n_outputs, reg.range, reg.summary[-1]) == ("regression", 1, (-3, 3), "acc7")
    assert tasks.from_description(reg.describe()).describe() == reg.describe()
    seven = tasks.for_labelset("mosei", "7class")
    assert (seven.kind, seven.n_outputs) == ("classification", 7)
    meld = tasks.for_labelset("meld", "7class")
    assert meld.classes[:2] == ["neutral", "joy"] and "wf1" in meld.summary
    out = torch.tensor([[0.5], [-1.0]])
    y = torch.tensor([1.0, -2.0])
    assert reg.loss(out, y).item() == pytest.approx(0.75) and reg.decode(out) == [0.5, -1.0]


def test_the_task_sets_the_loss_for_every_head():
    """Head.loss is the task's loss plus the head's own auxiliary terms (HFF's uncertainty KL)."""
    from heads.models import load_all
    hff = load_all()["hff"]
    config = hff.make_config("demo", {"modalities": "st"})
    torch.manual_seed(0)
    model = hff(config, {"speech": 6, "text": 6}, 1)
    model.task = tasks.Regression((-3, 3))
    batch = {"id": ["a", "b"], "label": torch.tensor([1.5, -2.0]),
             "speech": torch.randn(2, 9, 6), "speech_mask": torch.ones(2, 9, dtype=torch.bool),
             "text": torch.randn(2, 4, 6), "text_mask": torch.ones(2, 4, dtype=torch.bool)}
    out = model(batch)
    assert out.shape == (2, 1)
    expected = torch.nn.functional.l1_loss(out[:, 0], batch["label"]) + sum(model.aux_losses.values())
    assert model.loss(out, batch).item() == pytest.approx(expected.item())


def test_select_metric_must_fit_the_task():
    from heads.models import load_all
    mlp = load_all()["egemaps_mlp"]
    with pytest.raises(ConfigError, match="select_metric=ua is not a regression metric"):
        tasks.check_select_metric(tasks.for_labelset("mosei", "sentiment"), mlp.make_config("demo"), "egemaps_mlp")
    with pytest.raises(ConfigError, match="select_metric=mae is not a classification metric"):
        tasks.check_select_metric(tasks.for_labelset("mosei", "7class"),
                                  mlp.make_config("demo", {"select_metric": "mae", "labelset": "7class"}))


def test_balanced_class_weights_by_hand():
    task = tasks.Classification(["a", "b", "c"])
    # 3 a, 1 b, no c: n / (classes * n_c) = 4/9, 4/3; an absent class weighs 0.
    w = task.balanced_weights([0, 0, 1, 0])
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-0.5, 1.5, 0.0]])
    labels = torch.tensor([0, 0, 1])
    nll = -torch.log_softmax(logits, -1)[torch.arange(3), labels]
    weights = w[labels]
    # The weighted mean: each item's loss times its class weight, over the weights' sum.
    assert task.loss(logits, labels, w).item() == pytest.approx(((nll * weights).sum() / weights.sum()).item())
    assert task.loss(logits, labels).item() == pytest.approx(nll.mean().item())


def test_training_weighs_classes_by_the_training_fold(mosei_cache, monkeypatch, tmp_path):
    """run_folds gives each model the weights of its own training part's labels."""
    from heads import train
    from heads.data import Data
    from heads.models import load_all
    from heads.protocols import Options
    from pipeline.api import Cache
    mlp = load_all()["egemaps_mlp"]
    config = mlp.make_config("demo", {"labelset": "7class", "class_weights": "balanced"})
    data = Data(Cache(mosei_cache), "mosei", mlp.inputs(config), "7class")
    folds, _ = make_folds("official", list(data.items.values()), Options())
    seen = []

    def fake_fit(model, *args, **kwargs):
        seen.append(model.class_weight)
        raise KeyboardInterrupt         # stop before any training
    monkeypatch.setattr(train, "fit", fake_fit)
    with pytest.raises(KeyboardInterrupt):
        train.run_folds(mlp, config, data, folds, [0], tmp_path, "cpu", progress=False)
    counts = np.bincount([data.labels[i] for i in folds[0].train], minlength=7)
    expected = np.where(counts > 0, counts.sum() / (7 * np.maximum(counts, 1)), 0)
    assert seen[0].tolist() == pytest.approx(expected.tolist())
    assert len(set(counts.tolist())) > 1        # the fold is unbalanced, so the weights differ


# --- official splits ------------------------------------------------------------------

def _split_items(corpus, splits):
    return [Item(id=f"{s}_{i}", corpus=corpus, audio=Media(f"/x/{s}_{i}.wav"), split=s,
                 session=f"{s}_{i // 2}", speaker=f"{s}_{i // 2}") for s in splits for i in range(4)]


@pytest.mark.parametrize("corpus,splits", [("mosei", ("train", "valid", "test")), ("meld", ("train", "dev", "test"))])
def test_official_split_uses_the_official_dev_part(corpus, splits):
    (fold,), (report,) = make_folds("official", _split_items(corpus, splits))
    assert fold.train == [f"train_{i}" for i in range(4)] and fold.test == [f"test_{i}" for i in range(4)]
    assert fold.dev == [f"{splits[1]}_{i}" for i in range(4)] and report["ok"]


# --- a regression head end to end on a synthetic MOSEI-like cache -----------------------

def mosei_items(videos=12, per_video=6, seed=0):
    """Videos 0-7 train, 8-9 valid, 10-11 test; sentiment in thirds over [-3, 3]."""
    rng = np.random.default_rng(seed)
    items = []
    for v in range(videos):
        split = "train" if v < 8 else "valid" if v < 10 else "test"
        for k in range(per_video):
            score = float(np.round(rng.uniform(-3, 3) * 3) / 3)
            iid = f"vid{v:02d}___{k}"
            items.append(Item(id=iid, corpus="mosei", audio=Media(f"/nonexistent/{iid}.wav"), text="words",
                              split=split, session=f"vid{v:02d}", speaker=f"vid{v:02d}",
                              labels={"sentiment": score, "happy": 0.0}))
    return items


def sentiment_signal(item, rng, length, width):
    """Noise plus the sentiment score on one column (a learnable linear cue)."""
    x = rng.normal(scale=0.3, size=(length, width)).astype(np.float32)
    x[:, 0] += item.labels["sentiment"]
    return x


@pytest.fixture(scope="module")
def mosei_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("mosei_fake")
    write_fake_cache(d, mosei_items(), {"opensmile@egemaps": {"functionals": ("vec", 8)}}, dataset="mosei",
                     signal=sentiment_signal)
    return d


def _train(cache, out, *sets):
    argv = ["train", "--model", "egemaps_mlp", "--cache", str(cache), "--protocol", "official", "--preset", "demo",
            "--set", "epochs=40", "--set", "lr=3e-3", "--out", str(out), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    return main(argv)


def test_data_yields_float_targets(mosei_cache):
    from heads.data import Data, collate
    from heads.models import load_all
    mlp = load_all()["egemaps_mlp"]
    from pipeline.api import Cache
    data = Data(Cache(mosei_cache), "mosei", mlp.inputs(mlp.make_config("demo")), "sentiment")
    assert data.task.kind == "regression" and len(data.items) == 72
    batch = collate([data.subset(data.ids)[i] for i in range(3)])
    assert batch["label"].dtype == torch.float32
    assert batch["label"].tolist() == pytest.approx([data.items[i].labels["sentiment"] for i in data.ids[:3]])


def test_regression_head_trains_reports_and_evaluates(mosei_cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(mosei_cache, run, "labelset=sentiment", "select_metric=mae") == 0, capsys.readouterr().err
    r = json.loads((run / "results.json").read_text())
    assert r["task"] == {"kind": "regression", "value_range": [-3, 3]}
    assert r["protocol"]["folds"] == [{"name": "official", "train": 48, "dev": 12, "test": 12}]
    assert r["runs"][0]["selected_on"] == "dev mae"
    assert all(isinstance(v, float) for v in r["runs"][0]["predictions"].values())
    assert "train_mae" in r["runs"][0]["history"][0] and "dev_acc7" in r["runs"][0]["history"][0]
    test = [it for it in mosei_items() if it.split == "test"]
    truth = np.array([it.labels["sentiment"] for it in test])
    constant = np.abs(truth - np.mean([it.labels["sentiment"] for it in mosei_items() if it.split == "train"])).mean()
    mae = r["overall"]["mae"]["mean"]
    assert mae < 0.5 * constant, f"MAE {mae:.3f} is not well below predicting the mean ({constant:.3f})"
    assert r["overall"]["corr"]["mean"] > 0.8 and r["overall"]["acc2"]["mean"] > 0.7
    assert r["overall"]["mae"]["mean"] == pytest.approx(regression(
        truth, [r["runs"][0]["predictions"][it.id] for it in test], -3, 3)["mae"])
    assert (run / "confusion.png").stat().st_size > 0 and (run / "curves.png").stat().st_size > 0
    capsys.readouterr()

    assert main(["report", str(run)]) == 0
    table = capsys.readouterr().out
    assert "ACC-2" in table and "ACC-7" in table and "MAE" in table and "UA" not in table.split("\n")[0]
    assert f"{r['overall']['mae']['mean']:.3f}" in table

    assert main(["evaluate", str(run), "--cache", str(mosei_cache)]) == 0
    ev = json.loads((run / "evaluate-mosei-test.json").read_text())
    assert ev["overall"]["mae"]["mean"] == pytest.approx(mae, abs=1e-6)


def test_seven_class_option_is_a_classification(mosei_cache, tmp_path, capsys):
    run = tmp_path / "run7"
    assert _train(mosei_cache, run, "labelset=7class", "epochs=2") == 0, capsys.readouterr().err
    r = json.loads((run / "results.json").read_text())
    assert r["task"]["kind"] == "classification" and len(r["classes"]) == 7
    assert r["runs"][0]["selected_on"] == "dev ua"


@pytest.mark.parametrize("sets,message", [
    (["labelset=sentiment"], "select_metric=ua is not a regression metric"),
    (["labelset=7class", "select_metric=mae"], "select_metric=mae is not a classification metric"),
    (["labelset=sentiment", "select_metric=acc2"], None),
    (["labelset=sentiment", "select_metric=mae", 'class_weights="balanced"'],
     "class_weights=balanced needs a classification"),
])
def test_bad_task_options_fail_before_work(mosei_cache, tmp_path, capsys, sets, message):
    run = tmp_path / "bad"
    if message is None:             # a good combination is accepted (and trains)
        assert _train(mosei_cache, run, *sets, "epochs=1") == 0
        return
    assert _train(mosei_cache, run, *sets) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()
