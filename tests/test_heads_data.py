"""The heads' Dataset over the cache: label sets, caps, padding, rows read on
demand, side tracks and pooling, per-speaker standardisation."""
from __future__ import annotations

import numpy as np
import pytest
from heads_fake import fake_items, write_fake_cache

from heads import standardize
from heads.data import Data, collate, frame_ratio
from heads.head import Input
from heads.standardize import input_stats
from pipeline.api import Cache, NotInCache

ARRAYS = {"fbank@tsin": {"fbank": ("seq", 12)}, "mfcc": {"mfcc": ("seq", 5), }}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("heads_cache")
    items = fake_items(sessions=2, per_speaker=6)
    write_fake_cache(d, items, ARRAYS, per_shard=8, fail={items[0].id})
    return Cache(d), items


INPUTS = {"speech": Input("fbank@tsin", "fbank", "seq", cap=5), "other": Input("mfcc", "mfcc", "seq")}


def test_label_set_selection_and_failed_items(cache):
    c, items = cache
    data = Data(c, None, INPUTS, "4class")
    codes = {it.id: it.labels["emotion"] for it in items}
    # 4class keeps ang/hap/sad/neu and merges exc into hap; fru is dropped; the failed item is skipped.
    expected = {i for i, code in codes.items() if code != "fru"} - {items[0].id}
    assert set(data.ids) == expected
    assert items[0].id in data.dropped and "synthetic failure" in data.dropped[items[0].id]
    for i in data.ids:
        cls = data.classes[data.labels[i]]
        assert cls == {"exc": "hap"}.get(codes[i], codes[i])
    six = Data(c, None, INPUTS, "6class")
    assert len(six.ids) == len(items) - 1 and six.classes == ["ang", "hap", "exc", "sad", "fru", "neu"]


def test_arrays_caps_and_padding(cache):
    c, _ = cache
    data = Data(c, None, INPUTS, "4class")
    ds = data.subset(data.ids)
    direct = c.load("fbank@tsin", data.ids[:4])
    for j in range(4):
        item = ds[j]
        full = direct[item["id"]].arrays["fbank"]
        assert np.array_equal(item["speech"], full[:5])            # capped at 5 steps
        assert item["other"].shape[1] == 5
    batch = collate([ds[j] for j in range(4)])
    lengths = [len(ds[j]["other"]) for j in range(4)]
    assert batch["other"].shape == (4, max(lengths), 5)
    assert batch["other_mask"].sum(1).tolist() == lengths
    assert float(batch["other"][~batch["other_mask"]].abs().sum()) == 0.0
    assert batch["label"].tolist() == [ds[j]["label"] for j in range(4)]
    assert data.dims() == {"speech": 12, "other": 5}


def test_reader_keeps_a_bounded_number_of_shards_open(cache):
    c, _ = cache
    data = Data(c, None, INPUTS, "4class")
    data.reader.max_open = 2
    ds = data.subset(data.ids)
    shards = {loc[0] for s in data.sources.values() for loc in s.locations.values()}
    assert len(shards) > 2
    first = [ds[j] for j in range(len(ds))]
    assert len(data.reader._open) <= 2
    again = [ds[j] for j in range(len(ds))]     # evicted shards are opened again, same rows
    for a, b in zip(first, again):
        assert all(np.array_equal(a[k], b[k]) for k in a if k not in ("id", "label"))
    loaded = c.load("fbank@tsin", [ds.ids[0]])[ds.ids[0]].arrays
    assert np.array_equal(first[0]["speech"], loaded["fbank"][:5])     # the cap: 5 steps


def test_missing_stage_is_refused(cache):
    c, _ = cache
    # Plain `fbank` (default options) is another configuration than fbank@tsin: not extracted.
    with pytest.raises(NotInCache, match="lack an up-to-date fbank output"):
        Data(c, None, {"x": Input("fbank", "fbank")}, "4class")


def test_input_stats(cache):
    c, _ = cache
    data = Data(c, None, INPUTS, "4class")
    ds = data.subset(data.ids)
    stats = input_stats(ds)
    allrows = np.concatenate([ds[j]["speech"] for j in range(len(ds))])
    assert np.allclose(stats["speech"][0], allrows.mean(0), atol=1e-5)
    assert np.allclose(stats["speech"][1], allrows.std(0), atol=1e-4)


def _speaker(name, fold_inputs=(), standardize="speaker"):
    """A head stand-in whose feature inputs are INPUTS (for heads/standardize.py)."""
    from heads.head import Head, TrainConfig

    class Fake(Head):
        pass
    Fake.name, Fake.inputs = name, classmethod(lambda cls, config: INPUTS)
    return Fake, TrainConfig(standardize=standardize, fold_inputs=tuple(fold_inputs))


def test_per_speaker_normalisation(cache):
    c, _ = cache
    data = Data(c, None, INPUTS, "6class")
    standardize.prepare(*_speaker("fake"), data)
    ds = data.subset(data.ids)
    for speaker in {it.speaker for it in data.items.values()}:
        rows = np.concatenate([ds[j]["other"] for j, i in enumerate(data.ids) if data.items[i].speaker == speaker])
        assert np.allclose(rows.mean(0), 0, atol=1e-4) and np.allclose(rows.std(0), 1, atol=1e-3)


def test_fold_inputs_are_read_as_stored_the_others_per_speaker(cache):
    """fold_inputs: the named inputs are read as stored (the model standardises
    them with the training fold's statistics), every other feature input with
    its speaker's; without standardize=speaker nothing is per speaker."""
    c, _ = cache
    plain = Data(c, None, INPUTS, "6class").subset(["Ses01F_impro01_F001"])[0]
    data = Data(c, None, INPUTS, "6class")
    cls, config = _speaker("fake", fold_inputs=["speech"])
    standardize.prepare(cls, config, data)
    item = data.subset(["Ses01F_impro01_F001"])[0]
    assert np.array_equal(item["speech"], plain["speech"]) and not np.allclose(item["other"], plain["other"])
    assert standardize.speaker_inputs(cls, config) == ("other",)
    assert standardize.fold_inputs(cls, config, {"speech": 12, "other": 5}) == {"speech"}
    fold = _speaker("fake", standardize="fold")
    assert standardize.speaker_inputs(*fold) == () and standardize.fold_inputs(*fold, {"speech": 12}) == {"speech"}
    assert standardize.fold_inputs(*_speaker("fake", standardize="none"), {"speech": 12}) == set()


def test_training_evaluation_and_prediction_standardise_alike(cache):
    """Training and `heads evaluate` (Data) and `heads predict` (Unlabelled)
    prepare their data with the same function: the same items read the same."""
    from heads.predict import Unlabelled
    c, _ = cache
    cls, config = _speaker("fake", fold_inputs=["speech"])
    trained = Data(c, None, INPUTS, "6class")          # 6class keeps every item: the same speakers' items
    standardize.prepare(cls, config, trained)
    new = Unlabelled(c, "iemocap", INPUTS, trained.task)
    standardize.prepare(cls, config, new)
    assert set(new.ids) == set(trained.ids)
    for item_id in trained.ids:
        a, b = trained.subset([item_id])[0], new.subset([item_id])[0]
        assert all(np.array_equal(a[k], b[k]) for k in INPUTS)


# Two frame stages at different rates: fbank@harmofusion with a 12 ms hop, the
# eGeMAPS low-level descriptors with 10 ms (step j of the first at track step round(1.2 j)).
TRACKED = {"fbank@harmofusion": {"fbank": ("seq", 3)}, "opensmile@egemaps_lld": {"lld": ("seq", 2)}}


def _step_numbers(item, rng, length, width):
    """Each step's number in column 0 (so a test can see which step went where)."""
    x = rng.normal(size=(length, width)).astype(np.float32)
    x[:, 0] = np.arange(length)
    return x


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    d = tmp_path_factory.mktemp("tracked")
    write_fake_cache(d, fake_items(sessions=1, per_speaker=6), TRACKED, signal=_step_numbers)
    return Cache(d)


def test_a_track_is_read_at_the_frame_times_and_joined_feature_wise(tracked):
    ratio = frame_ratio("fbank@harmofusion", "opensmile@egemaps_lld", "frame_track")
    assert ratio == pytest.approx(1.2)
    track = Input("opensmile@egemaps_lld", "lld", "seq")
    joined = Data(tracked, None, {"speech": Input("fbank@harmofusion", "fbank", "seq", track=track)}, "6class")
    alone = Data(tracked, None, {"f": Input("fbank@harmofusion", "fbank"), "t": track}, "6class")
    assert joined.dims() == {"speech": 5} and set(joined.sources) == set(TRACKED)     # widths add
    for item_id in joined.ids:
        x = joined.subset([item_id])[0]["speech"]
        f, t = (alone.subset([item_id])[0][k] for k in "ft")
        at = np.round(np.arange(len(f)) * 1.2).astype(int)
        kept = int((at < len(t)).sum())          # frames past the track's end are left out
        assert x.shape == (kept, 5)
        assert np.array_equal(x[:, :3], f[:kept]) and np.array_equal(x[:, 3:], t[at[:kept]])
        assert np.array_equal(x[:, 3], at[:kept])        # the track's step numbers: its steps at the frame times


def test_pooling_averages_steps_after_the_track_and_masks_pooled_steps(tracked):
    track = Input("opensmile@egemaps_lld", "lld", "seq")
    joined = Data(tracked, None, {"speech": Input("fbank@harmofusion", "fbank", "seq", track=track)}, "6class")
    pooled = Data(tracked, None, {"speech": Input("fbank@harmofusion", "fbank", "seq", cap=7, pool=3,
                                                   track=track)}, "6class")
    examples = [pooled.subset(pooled.ids)[j] for j in range(len(pooled.ids))]
    for ex in examples:
        x = joined.subset([ex["id"]])[0]["speech"][:7]
        expected = np.stack([x[k:k + 3].mean(0) for k in range(0, len(x), 3)])
        assert np.allclose(ex["speech"], expected, atol=1e-6)      # the last pooled step: the steps left
    # Statistics are taken over the steps before pooling: a pooled step standardised
    # with them is the mean of its standardised steps.
    mean, std = input_stats(pooled.subset(pooled.ids))["speech"]
    steps = np.concatenate([joined.subset([e["id"]])[0]["speech"][:7] for e in examples])
    assert np.allclose(mean, steps.mean(0), atol=1e-4) and np.allclose(std, steps.std(0), atol=1e-4)
    batch = collate(examples)
    assert batch["speech_mask"].sum(1).tolist() == [-(-min(len(joined.subset([e["id"]])[0]["speech"]), 7) // 3)
                                                    for e in examples]


def test_declared_inputs_apply_the_shared_frame_options_to_the_frame_input():
    from heads.models import load_all
    fbank = load_all()["fbank_bilstm"]
    config = fbank.make_config("paper", {"frame_pool": 4, "frame_track": "opensmile@egemaps_lld:lld",
                                         "max_frames": 9})
    speech = fbank.declared_inputs(config)["speech"]
    assert speech.pool == 4 and fbank.inputs(config)["speech"].pool == 1
    # The track covers the capped frames' span: through its step at the last frame's time.
    assert speech.track == Input("opensmile@egemaps_lld", "lld", "seq", 9)
    assert fbank.stages(config) == ["fbank@tsin", "opensmile@egemaps_lld"]
    bert = load_all()["bert_mlp"]
    from pipeline.stage import ConfigError
    with pytest.raises(ConfigError, match="need a head with a frame input"):
        bert.make_config("paper", {"frame_pool": 2})
