"""The head contract, for every head in the registry (an alias is its head):
it declares a name, a description and a frozen Config on TrainConfig; its
declared inputs read stages that resolve, its modality groups and frame
input name declared inputs; its `paper` and `demo` presets resolve and
extract exactly the stages the head reads with them; every Config field is
sourced (a paper section or a choice) or a runtime field; a bad option
(its own or a shared one) stops `heads train` with exit 2 before anything is
written; every variant runs forward, loss and backward on a batch of the
demo preset's sizes with the shared training options switched on; and
`heads evaluate` of a trained run reproduces its test metrics (training and
evaluation standardise alike).

The per-head modules (test_heads_*.py) check each model against its paper;
this module checks what every head owes the training layer. A new head
joins by being registered, plus one line in BAD."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from test_heads_models import CASES, NAMES, _config, check_forward_backward

from heads.cli import main as heads
from heads.head import RUNTIME_FIELDS, Input, TrainConfig
from heads.models import load_all
from pipeline.graph import resolve
from pipeline.presets import find_preset, head_labels, head_presets, named_configs, preset_stage_options
from pipeline.stage import ConfigError
from pipeline.stages import load_all as load_stages

HEADS = load_all()
STAGES = load_stages()
PRESETS = ("paper", "demo")
# A paper section ("§4.1: ...", or "001 §4.2: ..." where one table serves two papers), or a choice with its reason.
SOURCE = re.compile(r"^((\d{3} )?§[^:]+: .{3,}|choice: .{8,})$")

# Per head: an option value its own check refuses, and words of the refusal.
BAD = {
    "bert_mlp": ("hidden=0", "hidden must be >= 1"),
    "egemaps_mlp": ("hidden=0", "hidden must be >= 1"),
    "emmanet": ("step_s=0", "step_s must be > 0"),
    "fbank_bilstm": ("max_frames=0", "widths and max_frames must be >= 1"),
    "harmofusion": ("align_epsilon=1.0", "align_epsilon must be in [0, 1)"),
    "harmofusion_mg": ("proj_dim=0", "proj_dim must be >= 1"),
    "hff": ("modalities=x", "modalities='x'"),
    "muse": ("phoneme_kernel=2", "phoneme_kernel and prenet_kernel must be odd"),
    "muse_mg": ("cross_layers=0", "cross_layers must be >= 1"),
    "superb": ("layer=-1", "layer must be >= 0"),
    "tsin": ("kernels=[2]", "each must be odd"),
}


def _configs(name, variant):
    """(preset, Config) of the variant under each of the head's presets."""
    return [(p, _config(HEADS[name], variant, preset=p)) for p in PRESETS]


def test_every_head_has_an_entry_here_and_aliases_are_their_heads():
    assert sorted(BAD) == NAMES
    assert HEADS.aliases and all(HEADS[a] is HEADS[t] and t in NAMES for a, t in HEADS.aliases.items())
    assert all(head_labels(a) == head_labels(t) for a, t in HEADS.aliases.items())


# --- declarations ---------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_declarations(name):
    cls = HEADS[name]
    assert cls.name == name and cls.description.strip()
    assert issubclass(cls.Config, TrainConfig) and cls.Config.__dataclass_params__.frozen
    config = cls.make_config("paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 2
    # The frame input, where there is one, is a frame sequence the full model reads.
    assert cls.frames is None or cls.inputs(config)[cls.frames].kind == "seq"


@pytest.mark.parametrize("name,variant", CASES)
def test_inputs_stages_groups_and_frames_are_declared(name, variant):
    cls = HEADS[name]
    for preset, config in _configs(name, variant):
        declared = cls.declared_inputs(config)
        assert declared and all(isinstance(i, Input) for i in declared.values())
        assert set(declared) == set(cls.inputs(config))
        _resolves(cls.stages(config), preset)
        # Groups name the full model's inputs: an ablation keeps the groups of
        # the inputs it leaves out (they drop nothing), so a preset's
        # modality_dropout serves each of its variants.
        full = cls.declared_inputs(cls.make_config(preset))
        groups = cls.modality_groups(config)
        assert all(members and set(members) <= set(full) for members in groups.values()), groups
        assert not any(full[n].kind == "raw" for members in groups.values() for n in members)
        if cls.frames in declared:
            frame = declared[cls.frames]
            assert frame.kind == "seq" and frame.pool == config.frame_pool
            assert (frame.track is not None) == bool(config.frame_track)


def _resolves(specs, preset):
    """Every stage spec names a registered stage (and a named configuration of
    it); with the preset's stage options it resolves, or (a model file that
    is not on this machine) is refused saying which option gives it."""
    for spec in specs:
        stage, _, named = spec.partition("@")
        assert stage in STAGES and (not named or spec in named_configs()), spec
    try:
        labels = {s.label for s in resolve(specs, preset_stage_options(preset, {}))}
    except ConfigError as e:
        assert re.search(r"--set [^=]+\.\w+=|set weights_path=", str(e)), str(e)
    else:
        assert set(specs) <= labels


# --- presets ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_paper_and_demo_presets_resolve_and_extract_what_the_head_reads(name):
    cls = HEADS[name]
    assert set(PRESETS) <= set(head_presets()[name])
    for preset in head_presets()[name]:            # packaged presets beyond paper and demo, too
        config = cls.make_config(preset)
        assert sorted(find_preset(name, preset).extract) == sorted(cls.stages(config)), preset


@pytest.mark.parametrize("name", NAMES)
def test_every_config_field_is_shared_sourced_or_runtime(name):
    """A field is a shared TrainConfig field (sources.toml's common table), has
    a source in the head's [sources.<head>] tables (a paper section or
    "choice: <why>"), or chooses how a run executes (RUNTIME_FIELDS)."""
    cls = HEADS[name]
    sources = cls.sources()
    lacking, malformed = [], []
    for f in dataclasses.fields(cls.Config):
        if f.name in RUNTIME_FIELDS:
            continue
        if f.name not in sources:
            lacking.append(f.name)
        elif not SOURCE.match(sources[f.name]):
            malformed.append(f"{f.name}: {sources[f.name]!r}")
    assert not lacking, f"{name}: fields without a source: {lacking}"
    assert not malformed, f"{name}: sources neither a paper section nor 'choice: <why>': {malformed}"


# --- bad options: exit 2 before any work -----------------------------------------------

def _shared_bad(cls):
    """Bad values of the shared training options for this head, with words of the refusal."""
    groups = sorted(cls.modality_groups(cls.make_config("paper")))
    whole = ",".join(f"{g}:{1.0 if i == 0 else 0.0}" for i, g in enumerate(groups))
    return [("modality_dropout=nosuchgroup:0.1", "modality_dropout names unknown group(s) ['nosuchgroup']"),
            (f"modality_dropout={whole}", "the shares add up to 1"),
            ("frame_pool=0", "frame_pool must be >= 1")]


BAD_CASES = [(name, *bad) for name in NAMES for bad in [BAD[name], *_shared_bad(HEADS[name])]]


@pytest.mark.parametrize("name,option,message", BAD_CASES, ids=[f"{n}-{o}" for n, o, _ in BAD_CASES])
def test_a_bad_option_fails_before_any_work(name, option, message, tmp_path, capsys):
    rc = heads(["train", "--model", name, "--cache", str(tmp_path / "cache"), "--set", option,
                "--out", str(tmp_path / "run")])
    assert rc == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []           # no cache folder, no run folder


# --- every variant trains a step with the shared training options on ------------------

def _with_tricks(cls, config):
    """The config with the shared training options on: modality dropout over
    all of its groups, speaker standardisation, and pooled frames where the
    head has a frame input (the demo preset's frame track stays)."""
    groups = sorted(cls.modality_groups(config))
    shares = tuple(f"{g}:{0.9 / len(groups):.4f}" for g in groups)
    pool = {"frame_pool": 2} if cls.frames else {}
    tricks = dataclasses.replace(config, modality_dropout=shares, standardize="speaker", **pool)
    cls.check(tricks)
    return tricks


@pytest.mark.parametrize("name,variant", CASES)
def test_every_variant_runs_forward_loss_and_backward_with_the_shared_options(name, variant):
    cls = HEADS[name]
    torch.manual_seed(0)
    check_forward_backward(cls, _with_tricks(cls, _config(cls, variant)))



# --- training and `heads evaluate` standardise alike ----------------------------------

def _reads_items_of_features(cls):
    """Heads whose demo preset reads feature arrays one example per item: a
    synthetic cache of their declared inputs serves them. Left out: the
    multilevel heads (phoneme ids that must fit their words) and EMMA-Net
    (windows cut from video timelines); tests/test_heads_multilevel.py and
    test_heads_emmanet.py train and evaluate those on their own caches."""
    from heads.head import Head
    inputs = cls.declared_inputs(cls.make_config("demo")).values()
    return all(i.is_feature for i in inputs) and cls.open_data.__func__ is Head.open_data.__func__


EVALUATED = [name for name in NAMES if _reads_items_of_features(HEADS[name])]


def _fake_arrays(cls, config, width=4) -> dict:
    """{stage spec: {array: (kind, width)}} of every input the head declares, tracks included."""
    arrays = {}

    def add(inp):
        arrays.setdefault(inp.stage, {})[inp.array] = ("vec" if inp.kind == "vec" else "seq", width)
        if inp.track:
            add(inp.track)
    for inp in cls.declared_inputs(config).values():
        add(inp)
    return arrays


@pytest.fixture(scope="module")
def ssl_model(tmp_path_factory):
    from tests.ssl_models import tiny_encoder
    return tiny_encoder(tmp_path_factory.mktemp("ssl-model") / "wavlm", "wavlm", feat_extract_norm="layer",
                        do_stable_layer_norm=True)


@pytest.mark.parametrize("name", EVALUATED)
def test_evaluate_on_the_test_parts_reproduces_the_runs_metrics(name, request, tmp_path, capsys):
    """A one-epoch demo run (speaker standardisation, pooled frames, modality
    dropout where the preset sets them), then `heads evaluate` of its
    checkpoints on the same test parts: the same metrics, fold by fold."""
    import json

    from heads_fake import fake_items, write_fake_cache
    cls = HEADS[name]
    config = cls.make_config("demo")
    sets = {"ssl": {"model": str(request.getfixturevalue("ssl_model"))}} if "ssl" in cls.stages(config) else {}
    write_fake_cache(tmp_path / "cache", fake_items(sessions=2, per_speaker=6), _fake_arrays(cls, config),
                     overrides=preset_stage_options("demo", sets))
    stage_sets = [a for stage, opts in sets.items() for k, v in opts.items() for a in ("--set", f"{stage}.{k}={v}")]
    run = tmp_path / "run"
    assert heads(["train", "--model", name, "--cache", str(tmp_path / "cache"), "--preset", "demo",
                  "--set", "epochs=1", *stage_sets, "--protocol", "session", "--out", str(run), "--quiet"]) == 0, \
        capsys.readouterr().err
    assert heads(["evaluate", str(run), "--cache", str(tmp_path / "cache")]) == 0, capsys.readouterr().err
    trained = json.loads((run / "results.json").read_text())["runs"]
    evaluated = json.loads((run / "evaluate-iemocap-test.json").read_text())["runs"]
    assert len(trained) == len(evaluated) == 2
    for t, e in zip(trained, evaluated):
        assert (t["seed"], t["fold"]) == (e["seed"], e["fold"])
        assert _flat(e["metrics"]) == pytest.approx(_flat(t["metrics"]), abs=1e-6), t["fold"]


def _flat(value, path="") -> dict:
    """{path: number} of a nested JSON value (metrics hold per-class tables)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{path}/{i}").items()}
    return {path: value}
