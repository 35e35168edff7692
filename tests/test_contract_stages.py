"""The stage contract, for every stage in the registry: it declares what it
reads, a version and a frozen Config; its defaults resolve (or are refused
before any work, saying which option to give); a bad option value stops
`pipeline extract` with exit 2 before anything is written; and it computes
every item of the small demo corpus, which a rerun then reuses.

The per-stage modules (test_stage_*.py) check each stage's values against
the library it wraps; this module checks what every stage owes the pipeline.
A new stage joins by being registered, plus one line in BAD (and in OFFLINE
when its defaults need a file that is not here)."""
import dataclasses
import re
import tomllib

import numpy as np
import pytest

from pipeline.api import Cache
from pipeline.graph import resolve
from pipeline.manifest import Item
from pipeline.stage import ConfigError, make_config
from pipeline.stages import load_all

from tests.helpers import extract, run_cli, summary
from tests.ssl_models import tiny_encoder

STAGES = sorted(load_all())

# Options under which a stage computes here: no network, no ImageNet files, no
# shipped speech encoder (ssl's model is a tiny random one, set in `offline`);
# sparse video sampling and small images keep the CPU run short.
OFFLINE = {
    "deepspectrum": {"weights": "random", "seed": 0, "image_size": 64},
    "frames": {"weights": "random", "seed": 0, "size": 32, "every": 30},
    "face": {"every": 15},
    "pose": {"rate_hz": 1.0},
}

# Per stage: a value it refuses before any work, and words of the refusal.
BAD = {
    "bert": ("layers=[9]", "layers index 9"),
    "deepspectrum": ("window_s=-1.0", "window_s and hop_s must be positive"),
    "face": ("model_sha256=" + "0" * 64, "sha256"),
    "fbank": ("deltas=3", "deltas=3: must be 0, 1 or 2"),
    "frames": ("arch=vgg99", "arch"),
    "glove": ("path=/nonexistent/glove.txt", "expected a GloVe text file"),
    "mfcc": ("n_mfcc=500", "n_mfcc must be between 1 and n_mels"),
    "opensmile": ("window_s=0.0", "must be positive"),
    "phonemes": ("language=English please", "language"),
    "pose": ("rate_hz=0.0", "rate_hz"),
    "ssl": ("overlap_seconds=0.0", "overlap_seconds must be >= 0.1"),
    "words": ("times=maybe", "times='maybe' is not a valid bool"),
}

# Stages whose defaults need a file that is not on this machine: resolving
# them refuses with words that say which option gives it.
NEEDS_A_FILE = {"ssl": "--set ssl.model=", "deepspectrum": "weights=random",
                "frames": "resnet18-f37072fd.pth"}


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    model = tiny_encoder(tmp_path_factory.mktemp("ssl-model") / "wavlm", "wavlm",
                         feat_extract_norm="layer", do_stable_layer_norm=True)
    return {**OFFLINE, "ssl": {"model": str(model)}}


@pytest.fixture(autouse=True)
def no_imagenet_files(tmp_path_factory, monkeypatch):
    """ImageNet weights are never here: the same answer on every machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "empty-torch-home"))


def stage_args(name, offline, *extra) -> list:
    """`pipeline extract` arguments for stage `name` under its offline options."""
    sets = [a for k, v in offline.get(name, {}).items() for a in ("--set", f"{name}.{k}={v}")]
    return ["--stages", name, *sets, *extra]


def test_every_stage_has_an_entry_here():
    assert sorted(BAD) == STAGES
    assert set(OFFLINE) | set(NEEDS_A_FILE) <= set(STAGES)


@pytest.mark.parametrize("name", STAGES)
def test_declares_reads_version_and_config(name):
    cls = load_all()[name]
    assert cls.name == name and isinstance(cls.version, str) and cls.version
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    item_fields = {f.name for f in dataclasses.fields(Item)}
    assert set(cls.reads) <= item_fields, set(cls.reads) - item_fields
    assert cls.reads or cls.consumes, "a stage reads an item field or consumes another stage"
    for role, option in cls.consumes.items():
        assert option in fields, (role, option)
        assert getattr(cls.Config(), option).partition("@")[0] in STAGES
    assert set(cls.runtime_options) | set(cls.location_options) <= fields


@pytest.mark.parametrize("name", STAGES)
def test_defaults_print_and_resolve(name, offline, capsys):
    """`pipeline config NAME` prints the defaults that a run uses; they
    resolve, with each consumed stage, or are refused naming the option."""
    cls = load_all()[name]
    assert run_cli("config", name) == 0
    printed = tomllib.loads(capsys.readouterr().out)[name]
    assert make_config(cls, printed) == cls.Config()
    if name in NEEDS_A_FILE:
        with pytest.raises(ConfigError, match=re.escape(NEEDS_A_FILE[name])):
            resolve([name])
    options = offline.get(name, {})
    specs = resolve([name], {name: options})
    spec = specs[-1]
    assert spec.label == name and spec.stage.config == make_config(cls, options)
    assert {role: up.label for role, up in spec.upstream.items()} == spec.stage.upstream_specs()
    again = resolve([name], {name: options})[-1]
    assert again.config_id == spec.config_id and len(spec.config_id) == 16


@pytest.mark.parametrize("name", STAGES)
def test_bad_value_exits_2_before_any_work(name, offline, demo_root, tmp_path, capsys):
    value, words = BAD[name]
    cache = tmp_path / "cache"
    assert extract(demo_root, cache, *stage_args(name, offline, "--set", f"{name}.{value}"), dataset="iemocap") == 2
    assert words in capsys.readouterr().err
    assert not list(cache.glob("shards/**/*.h5")) and not (cache / "index.sqlite").exists()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module: stages that consume `words` reuse it."""
    return tmp_path_factory.mktemp("contract") / "cache"


@pytest.fixture(scope="module")
def demo_items(demo_root):
    from pipeline.corpora import read_corpus
    return read_corpus("iemocap", demo_root)


@pytest.mark.parametrize("name", STAGES)
def test_computes_the_demo_corpus_and_a_rerun_reuses_it(name, offline, demo_root, demo_items, shared_cache,
                                                        capsys):
    args = stage_args(name, offline)
    capsys.readouterr()
    assert extract(demo_root, shared_cache, *args, dataset="iemocap") == 0
    row = summary(capsys.readouterr().out)[name]
    # Reused: made before as another stage's upstream (words for bert) in this cache.
    assert (row["computed"] + row["reused"], row["failed"]) == (len(demo_items), "0"), row
    feats = Cache(shared_cache).load(name, overrides={name: offline.get(name, {})})
    assert sorted(feats) == sorted(i.id for i in demo_items)
    for item_id, f in feats.items():
        assert f.arrays, item_id
        for array_name, a in f.arrays.items():
            if a.dtype.kind == "f":
                assert np.isfinite(a).all(), (item_id, array_name)
        for array_name, t in f.times.items():      # a sequence's steps, each with its time
            assert len(t) == len(f.arrays[array_name]), (item_id, array_name)
    assert extract(demo_root, shared_cache, *args, dataset="iemocap") == 0
    row = summary(capsys.readouterr().out)[name]
    assert (row["computed"], row["reused"]) == (0, len(demo_items)), row
