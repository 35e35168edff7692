"""The `ssl` stage against direct transformers calls on tiny random encoders."""
import copy
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.context import ItemContext
from pipeline.manifest import Item, Media
from pipeline.models import find_model, model_digest
from pipeline.stage import ConfigError, make_config
from pipeline.stages.ssl import SSL, chunk_plan, length_batches

from helpers import extract, make_table_corpus, run_cli, summary
from ssl_models import tiny_encoder

# wav2vec2 as wav2vec2-base (group norm in the CNN: no padding, equal-length
# batches only); WavLM as the large models (layer norm: padded batches, a mask).
KINDS = {"wav2vec2": {}, "wavlm": {"feat_extract_norm": "layer", "do_stable_layer_norm": True}}
# The other families: states equal to a direct call too (HuBERT as hubert-base, data2vec-audio:
# equal-length batches), and Whisper's encoder (every input padded to 30 s).
MORE = {"hubert": {}, "data2vec-audio": {}, "whisper": {}}
LENGTHS = (16000, 23456, 8000, 16000, 41000)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl-models")
    return {kind: tiny_encoder(root / kind, kind, **opts) for kind, opts in {**KINDS, **MORE}.items()}


def make_stage(model, **options):
    stage = SSL(make_config(SSL, {"model": str(model), **options}))
    stage.validate()
    return stage


def wav_contexts(folder, lengths=LENGTHS, seed=0):
    """Items with 16 kHz WAVs of noisy tones (different per item)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        t = np.arange(n) / 16000
        y = 0.3 * np.sin(2 * np.pi * (120 + 40 * i) * t) + 0.05 * rng.standard_normal(n)
        path = folder / f"a{i}.wav"
        sf.write(path, y.astype(np.float32), 16000, subtype="FLOAT")
        out.append(ItemContext(Item(f"a{i}", "test", audio=Media(str(path))), {}))
    return out


def direct(stage, y):
    """All hidden states of one unpadded forward: (frames, L, D)."""
    enc = stage.resources
    inputs = enc.fe(y, sampling_rate=16000, return_tensors="pt")
    inputs.pop("attention_mask", None)          # one item: nothing is padded
    with torch.inference_mode():
        hidden = enc.net(*inputs.values(), output_hidden_states=True).hidden_states
    return torch.stack(hidden, dim=2)[0].numpy()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_states_shapes_and_times_equal_a_direct_call(models, kind, tmp_path):
    stage = make_stage(models[kind], batch_seconds=8)
    ctxs = wav_contexts(tmp_path)
    results = stage.compute_batch(ctxs)
    assert stage.resources.pads_exactly == (kind == "wavlm")
    for ctx, n, r in zip(ctxs, LENGTHS, results):
        frames = r.arrays["frames"]
        expected_t = (n - 400) // 320 + 1           # the CNN's receptive field and stride
        assert frames.data.shape == (expected_t, 3, 32) and frames.data.dtype == np.float32
        assert frames.rate == 50.0 and frames.offset == pytest.approx(200 / 16000)   # frame centres
        np.testing.assert_allclose(frames.data, direct(stage, ctx.audio(16000)), atol=1e-5, rtol=0)
        assert r.arrays["layers"].data.tolist() == [0, 1, 2]


def test_layers_pooling_and_float16(models, tmp_path):
    ctxs = wav_contexts(tmp_path, LENGTHS[:2])
    full = make_stage(models["wavlm"]).compute_batch(ctxs)
    one = make_stage(models["wavlm"], layers=["-1"], pool="mean+std", dtype="float16").compute_batch(ctxs)
    two = make_stage(models["wavlm"], layers=[0, 2], pool="mean").compute_batch(ctxs)
    for f, a, b in zip(full, one, two):
        states = f.arrays["frames"].data
        assert "frames" not in a.arrays and a.arrays["pooled"].data.dtype == np.float16
        np.testing.assert_allclose(a.arrays["pooled"].data.astype(np.float32),
                                   np.concatenate([states[:, 2].mean(0), states[:, 2].std(0)]), atol=2e-3)
        np.testing.assert_allclose(b.arrays["pooled"].data, states[:, [0, 2]].mean(0), atol=1e-6)
        assert a.arrays["layers"].data.tolist() == [2] and b.arrays["layers"].data.tolist() == [0, 2]


def test_chunk_plan_covers_every_frame_once():
    class Cfg:
        max_seconds, overlap_seconds = 2.0, 0.5
    n_frames = lambda n: (n - 400) // 320 + 1   # noqa: E731
    for n in (32000, 32001, 70000, 16000 * 7 + 123):
        plan = chunk_plan(n, 16000, Cfg, 320, n_frames)
        kept = [c.start // 320 + k for c in plan for k in range(c.keep_from, c.keep_to)]
        assert kept == list(range(n_frames(n)))
        assert all(c.start % 320 == 0 and c.stop - c.start <= 32000 for c in plan)
        assert plan[-1].stop == n


def test_batches_pad_only_when_exact():
    lengths = [5, 3, 5, 9, 3]
    assert length_batches(lengths, 100, pad_ok=True) == [[1, 4, 0, 2, 3]]
    assert length_batches(lengths, 100, pad_ok=False) == [[1, 4], [0, 2], [3]]
    assert length_batches(lengths, 10, pad_ok=True) == [[1, 4], [0, 2], [3]]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_chunked_cnn_is_identical_and_the_transformer_difference_is_measured(models, kind, tmp_path):
    """The CNN frames of overlapping chunks are the single pass's frames;
    the transformer states differ near chunk edges (printed, and in docs/ssl.md)."""
    stage = make_stage(models[kind], max_seconds=1.5, overlap_seconds=0.5)
    enc = stage.resources
    (ctx,) = wav_contexts(tmp_path, [16000 * 5 + 777])
    y = enc.prepare(ctx.audio(16000))         # normalised over the whole item, as the stage does
    plan = chunk_plan(len(y), 16000, stage.config, enc.stride, enc.n_frames)
    assert len(plan) > 4
    # In float64, so that "identical" is not blurred by float32 kernels that sum in another order.
    cnn = copy.deepcopy(enc.net.feature_extractor).double()
    y64 = y.astype(np.float64)
    with torch.inference_mode():
        run = lambda a: cnn(torch.from_numpy(a)[None]).transpose(1, 2)[0].numpy()  # noqa: E731
        whole = run(y64)
        stitched = np.concatenate([run(y64[c.start:c.stop])[c.keep_from:c.keep_to] for c in plan])
    assert stitched.shape == whole.shape
    if kind == "wavlm":       # a layer-norm CNN is local: the same frames
        np.testing.assert_allclose(stitched, whole, atol=1e-12, rtol=0)
    else:                     # group norm over time: each chunk is normalised on its own statistics
        print(f"\n{kind}: group-norm CNN, chunked vs single pass: max |diff| {np.abs(stitched - whole).max():.3g}")
    (r,) = stage.compute_batch([ctx])
    single = direct(stage, ctx.audio(16000))
    diff = np.abs(r.arrays["frames"].data - single).max(axis=(0, 2)) / np.abs(single).max(axis=(0, 2))
    print(f"\n{kind}: chunked vs single pass, max |diff| / max |state| per layer: {np.round(diff, 4)}")
    assert r.arrays["frames"].data.shape == single.shape and r.meta["chunks"] == len(plan)
    assert np.isfinite(diff).all()
    if kind == "wavlm":   # the transformer's input too: its positional conv (+-8 frames) fits in half the overlap
        np.testing.assert_allclose(r.arrays["frames"].data[:, 0], single[:, 0], atol=1e-5, rtol=0)


def test_no_model_exits_2_with_how_to_give_one(tmp_path, capsys):
    csv = make_table_corpus(tmp_path / "corpus", n=1)
    assert extract(csv, tmp_path / "cache", "--stages", "ssl") == 2
    err = capsys.readouterr().err
    assert "--set ssl.model=" in err and "No model ships" in err
    assert extract(csv, tmp_path / "cache", "--stages", "ssl", "--set", "ssl.model=nobody/no-such-model") == 2
    err = capsys.readouterr().err
    assert "nobody/no-such-model" in err and "local Hugging Face cache" in err and "hf download" in err


def test_found_in_the_hf_cache_by_id_and_named_by_content(models, tmp_path, monkeypatch):
    import huggingface_hub.constants
    hub = tmp_path / "hub"
    snapshot = hub / "models--someone--tiny-wavlm" / "snapshots" / "0123abcd"
    shutil.copytree(models["wavlm"], snapshot)
    (hub / "models--someone--tiny-wavlm" / "refs").mkdir()
    (hub / "models--someone--tiny-wavlm" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    assert find_model("someone/tiny-wavlm") == str(snapshot)
    moved = shutil.copytree(models["wavlm"], tmp_path / "elsewhere")
    assert model_digest("someone/tiny-wavlm") == model_digest(str(moved)) == model_digest(str(models["wavlm"]))
    assert model_digest(str(models["wavlm"])) != model_digest(str(models["wav2vec2"]))
    with pytest.raises(ConfigError, match="someone/tiny-wavlm@deadbeef"):
        find_model("someone/tiny-wavlm@deadbeef")


def test_rerun_computes_nothing_and_layers_recompute_only_ssl(models, tmp_path, capsys):
    csv = make_table_corpus(tmp_path / "corpus", n=3)
    cache = tmp_path / "cache"
    model = f"ssl.model={models['wavlm']}"
    assert extract(csv, cache, "--stages", "ssl,fbank", "--set", model) == 0
    rows = summary(capsys.readouterr().out)
    assert rows["ssl"]["computed"] == 3 and rows["ssl"]["failed"] == "0"
    assert extract(csv, cache, "--stages", "ssl,fbank", "--set", model) == 0
    rows = summary(capsys.readouterr().out)
    assert rows["ssl"]["computed"] == 0 and rows["fbank"]["computed"] == 0
    # Moving the model folder changes nothing: it is named by content.
    moved = shutil.copytree(models["wavlm"], tmp_path / "moved-model")
    assert extract(csv, cache, "--stages", "ssl,fbank", "--set", f"ssl.model={moved}") == 0
    assert summary(capsys.readouterr().out)["ssl"]["computed"] == 0
    assert extract(csv, cache, "--stages", "ssl,fbank", "--set", model, "--set", "ssl.layers=[0,2]") == 0
    rows = summary(capsys.readouterr().out)
    assert rows["ssl"]["computed"] == 3 and rows["fbank"]["computed"] == 0 and rows["fbank"]["reused"] == 3
    from pipeline.api import Cache
    feats = Cache(cache).load("ssl", overrides={"ssl": {"model": str(models["wavlm"]), "layers": [0, 2]}})
    f = feats["u0"]
    assert f.arrays["frames"].shape[1:] == (2, 32)
    np.testing.assert_allclose(f.times["frames"][:3], [0.0125, 0.0325, 0.0525])
    assert run_cli("extract", "--cache", cache, "--scheduler", "sync", "--quiet", "--stages", "ssl",
                   "--set", model, "--set", "ssl.layers=[7]") == 2


@pytest.mark.parametrize("kind", sorted(MORE))
def test_other_families_equal_a_direct_call(models, kind, tmp_path):
    stage = make_stage(models[kind], batch_seconds=8, layers=[0, -1])
    ctxs = wav_contexts(tmp_path, LENGTHS[:3])
    assert stage.resources.pads_exactly == (kind == "whisper")
    for ctx, r in zip(ctxs, stage.compute_batch(ctxs)):
        expected = direct(stage, ctx.audio(16000))
        frames = r.arrays["frames"].data
        if kind == "whisper":   # 50 Hz frames of the real audio out of the 30 s the encoder always sees
            assert len(frames) == -(-len(ctx.audio(16000)) // 320) and len(expected) == 1500
            assert r.arrays["frames"].offset == 0.0
        np.testing.assert_allclose(frames, expected[:len(frames), [0, 2]], atol=1e-5, rtol=0)
