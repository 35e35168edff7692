"""The heads' Dataset over the cache: label sets, caps, padding, rows read on demand."""
from __future__ import annotations

import numpy as np
import pytest
from heads_fake import fake_items, write_fake_cache

from heads.data import Data, collate, input_stats
from heads.head import Input
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


def test_input_stats_centred_on_the_median_item(cache):
    """center=median: the median over items of each item's mean, and the
    root mean square distance of every step from it."""
    c, _ = cache
    data = Data(c, None, INPUTS, "4class")
    ds = data.subset(data.ids)
    loc, spread = input_stats(ds, "median")["speech"]
    items = [ds[j]["speech"].astype(np.float64) for j in range(len(ds))]
    expected = np.median([x.mean(0) for x in items], 0)
    allrows = np.concatenate(items)
    assert np.allclose(loc, expected, atol=1e-5)
    assert np.allclose(spread, np.sqrt(((allrows - expected) ** 2).mean(0)), atol=1e-4)
    assert not np.allclose(loc, allrows.mean(0), atol=1e-3)     # the fixture's items make the two differ


def test_per_speaker_normalisation(cache):
    c, _ = cache
    data = Data(c, None, INPUTS, "6class")
    data.normalise_per_speaker()
    ds = data.subset(data.ids)
    for speaker in {it.speaker for it in data.items.values()}:
        rows = np.concatenate([ds[j]["other"] for j, i in enumerate(data.ids) if data.items[i].speaker == speaker])
        assert np.allclose(rows.mean(0), 0, atol=1e-4) and np.allclose(rows.std(0), 1, atol=1e-3)
    median = Data(c, None, INPUTS, "6class")
    median.normalise_per_speaker(center="median")
    ds = median.subset(median.ids)
    for speaker in {it.speaker for it in median.items.values()}:
        own = [j for j, i in enumerate(median.ids) if median.items[i].speaker == speaker]
        # each speaker's median item now has mean 0, and its steps unit mean square
        assert np.allclose(np.median([ds[j]["other"].mean(0) for j in own], 0), 0, atol=1e-4)
        assert np.allclose((np.concatenate([ds[j]["other"] for j in own]) ** 2).mean(0), 1, atol=1e-3)


def test_per_speaker_normalisation_of_chosen_inputs_only(cache):
    """speaker_inputs: only the named inputs get their speaker's statistics;
    the others are read as stored (the model standardises them with the
    training fold's statistics), and a name that is no feature input fails."""
    c, _ = cache
    plain = Data(c, None, INPUTS, "6class").subset(["Ses01F_impro01_F001"])[0]
    data = Data(c, None, INPUTS, "6class")
    data.normalise_per_speaker(("other",))
    item = data.subset(["Ses01F_impro01_F001"])[0]
    assert np.array_equal(item["speech"], plain["speech"]) and not np.allclose(item["other"], plain["other"])
    from heads.models import load_all
    from pipeline.stage import ConfigError
    tsin = load_all()["tsin"]
    assert tsin.make_config("demo", {"speaker_inputs": ["speech"]}).speaker_inputs == ("speech",)
    for options in ({"speaker_inputs": ["words"]}, {"speaker_inputs": ["speech"], "standardize": "fold"}):
        with pytest.raises(ConfigError, match="speaker_inputs needs standardize=speaker"):
            tsin.make_config("demo", options)
    assert tsin.speaker_normalised(tsin.make_config("demo", {"speaker_inputs": ["speech"]})) == ("speech",)
    assert tsin.speaker_normalised(tsin.make_config("demo", {"fold_inputs": ["text"]})) == ("speech",)
    assert set(tsin.speaker_normalised(tsin.make_config("demo"))) == {"speech", "text"}
    assert tsin.speaker_normalised(tsin.make_config("demo", {"standardize": "fold"})) == ()
    with pytest.raises(ConfigError, match="fold_inputs needs standardize=speaker"):
        tsin.make_config("demo", {"fold_inputs": ["cls"]})
    with pytest.raises(ConfigError, match="not both"):
        tsin.make_config("demo", {"fold_inputs": ["text"], "speaker_inputs": ["speech"]})
    with pytest.raises(ConfigError, match="speaker_center=median needs standardize=speaker"):
        tsin.make_config("demo", {"speaker_center": "median", "standardize": "fold"})
