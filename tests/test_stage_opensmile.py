"""The opensmile stage equals the opensmile package called directly on the
same span; windowed functionals follow the shared window rule."""
import numpy as np
import opensmile
import pytest
import soundfile as sf

from pipeline.api import Cache
from pipeline.graph import resolve
from pipeline.stage import ConfigError
from pipeline.stages.opensmile import FEATURE_SETS, FRAME_RATE, LEVELS, NO_DELTAS
from tests.helpers import extract, summary

SR = 16000
# id: (start, end) of a span of the 4 s test file; None = whole file.
SPANS = {
    "whole": (None, None),
    "span": (0.5, 2.0),
    "exact": (0.5, 2.5),                  # 2.0 s: windows of 1 s, hop 0.5 s fit exactly (3)
    "short1": (0.5, 2.5 - 1 / SR),        # one sample short of that: 2 windows
    "sub": (1.0, 1.3),                    # shorter than one window: 1 padded window
    "tiny": (1.0, 1.03),                  # too short for any openSMILE analysis frame
}


def _voice(n, seed=0):
    """A gliding harmonic tone with noise: openSMILE finds pitch, jitter, formants in it."""
    t = np.arange(n) / SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    return (0.2 * y + 0.01 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("smile")
    sf.write(root / "a.wav", _voice(4 * SR), SR, subtype="PCM_16")
    lines = ["id,audio,start,end"]
    for item, (a, b) in SPANS.items():
        lines.append(f"{item},a.wav,{'' if a is None else a},{'' if b is None else repr(b)}")
    (root / "t.csv").write_text("\n".join(lines) + "\n")
    return root / "t.csv"


def _direct(corpus, item, feature_set, level):
    a, b = SPANS[item]
    smile = opensmile.Smile(opensmile.FeatureSet[feature_set], opensmile.FeatureLevel[LEVELS[level]])
    return smile, smile.process_file(str(corpus.parent / "a.wav"), start=a, end=b)


def test_option_lists_match_the_package():
    assert set(FEATURE_SETS.__args__) == {f.name for f in opensmile.FeatureSet}
    assert set(LEVELS.values()) == {f.name for f in opensmile.FeatureLevel}
    for fs in opensmile.FeatureSet:
        try:
            opensmile.Smile(fs, opensmile.FeatureLevel.LowLevelDescriptors_Deltas)
            has_deltas = True
        except ValueError:
            has_deltas = False
        assert has_deltas == (fs.name not in NO_DELTAS), fs.name


def test_egemaps_functionals_equal_direct_opensmile(corpus, tmp_path, capsys):
    cache = tmp_path / "c"
    assert extract(corpus, cache, "--stages", "opensmile") == 0
    c = Cache(cache)
    feats = c.load("opensmile", ["whole", "span"])
    for item in ("whole", "span"):
        smile, want = _direct(corpus, item, "eGeMAPSv02", "functionals")
        got = feats[item].arrays["functionals"]
        assert got.shape == (88,)
        np.testing.assert_allclose(got, want.to_numpy()[0], rtol=1e-5, atol=1e-6)
    assert c.stage_attrs("opensmile")["feature_names"] == list(smile.feature_names)
    # The too-short item is a per-item failure with a message, not a crash.
    errors = c.status("opensmile")["errors"]
    assert list(errors) == ["tiny"]
    assert "too short for openSMILE eGeMAPSv02" in errors["tiny"] and "0.030 s" in errors["tiny"]
    capsys.readouterr()
    assert extract(corpus, cache, "--stages", "opensmile") == 0   # rerun: nothing to compute
    assert summary(capsys.readouterr().out)["opensmile"]["computed"] == 0


def test_compare_llds_equal_direct_opensmile(corpus, tmp_path):
    cache = tmp_path / "c"
    opts = {"opensmile": {"feature_set": "ComParE_2016", "level": "lld"}}
    assert extract(corpus, cache, "--stages", "opensmile", "--set", "opensmile.feature_set=ComParE_2016",
                   "--set", "opensmile.level=lld") == 0
    c = Cache(cache)
    got = c.load("opensmile", ["span"], overrides=opts)["span"]
    smile, want = _direct(corpus, "span", "ComParE_2016", "lld")
    assert got.arrays["lld"].shape == want.shape == (want.shape[0], 65)
    np.testing.assert_allclose(got.arrays["lld"], want.to_numpy(), rtol=1e-5, atol=1e-5)
    # openSMILE's own frame times, relative to the span start, at its 100 Hz step.
    starts = want.index.get_level_values("start").total_seconds().to_numpy() - SPANS["span"][0]
    np.testing.assert_allclose(got.times["lld"], starts, atol=1e-6)
    assert np.median(np.diff(starts)) == pytest.approx(1 / FRAME_RATE)
    attrs = c.stage_attrs("opensmile", overrides=opts)
    assert attrs["feature_names"] == list(smile.feature_names) and attrs["frame_rate"] == 100.0


def test_windowed_functionals_follow_the_window_rule(corpus, tmp_path):
    cache = tmp_path / "c"
    opts = {"opensmile": {"window_s": 1.0, "hop_s": 0.5}}
    assert extract(corpus, cache, "--stages", "opensmile", "--set", "opensmile.window_s=1.0") == 0
    feats = Cache(cache).load("opensmile", ["exact", "short1", "sub", "tiny"], overrides=opts)
    expect = {"exact": [0.5, 1.0, 1.5], "short1": [0.5, 1.0], "sub": [0.5], "tiny": [0.5]}
    for item, centres in expect.items():
        f = feats[item]
        assert f.arrays["functionals"].shape == (len(centres), 88), item
        np.testing.assert_allclose(f.times["functionals"], centres, atol=1e-9)
    assert feats["sub"].meta["padded"] and not feats["exact"].meta["padded"]
    # Window k of an item is openSMILE on [k * hop, k * hop + 1 s) of the item's span.
    smile = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02, opensmile.FeatureLevel.Functionals)
    y, _ = sf.read(corpus.parent / "a.wav", dtype="float32")
    start = int(SPANS["exact"][0] * SR)
    for k in range(3):
        seg = y[start + k * SR // 2: start + k * SR // 2 + SR]
        want = smile.process_signal(seg, SR).to_numpy()[0]
        np.testing.assert_allclose(feats["exact"].arrays["functionals"][k], want, rtol=1e-5, atol=1e-6)
    # The short item's one window is its audio followed by silence.
    a, b = SPANS["sub"]
    padded = np.zeros(SR, np.float32)
    padded[:int(round(b * SR)) - int(round(a * SR))] = y[int(round(a * SR)):int(round(b * SR))]
    np.testing.assert_allclose(feats["sub"].arrays["functionals"][0],
                               smile.process_signal(padded, SR).to_numpy()[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options, words", [
    ({"feature_set": "eGeMAPSv02", "level": "lld_deltas"}, "lld_deltas is not available"),
    ({"level": "lld", "window_s": 1.0}, "window_s applies to level=functionals"),
    ({"feature_set": "eGeMAPSv03"}, "feature_set"),
])
def test_bad_options_fail_before_any_work(options, words):
    with pytest.raises(ConfigError, match=words):
        resolve(["opensmile"], {"opensmile": options})
