"""The `glove` stage: a GloVe-format file streamed for the corpus words, or the
text model's input embeddings when there is no file."""
import gzip

import numpy as np
import pytest

import pipeline.digests as store_mod
from pipeline.graph import resolve
from pipeline.stage import ConfigError, make_config
from pipeline.stages.glove import Glove
from tests.helpers import word_contexts as contexts

DIM = 6
VOCAB = ["the", "cat", "sat", "did", "n't", "co", "operate", "a", "mat", ".", "zebra"]


@pytest.fixture(autouse=True)
def own_digest_file(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "_DIGESTS_FILE", str(tmp_path / "digests.json"))


@pytest.fixture
def glove_file(tmp_path):
    rng = np.random.default_rng(0)
    vectors = {w: rng.normal(size=DIM).astype(np.float32) for w in VOCAB}
    path = tmp_path / "glove.test.6d.txt"
    path.write_text("".join(f"{w} {' '.join(f'{x:.6f}' for x in v)}\n" for w, v in vectors.items()))
    return path, {w: np.array([float(f"{x:.6f}") for x in v], np.float32) for w, v in vectors.items()}


def stage_for(**options):
    (spec,) = [s for s in resolve(["glove"], {"glove": options}) if s.name == "glove"]
    return spec.stage


def test_file_vectors_oov_and_pieces(glove_file):
    path, vectors = glove_file
    stage = stage_for(path=str(path))
    r, empty = stage.compute_batch(contexts("The cat didn't co-operate, quokka!", "[LAUGHTER]"))
    got = r.arrays["vectors"].data
    assert got.shape == (5, DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], vectors["the"])
    np.testing.assert_allclose(got[1], vectors["cat"])
    np.testing.assert_allclose(got[2], (vectors["did"] + vectors["n't"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(got[3], (vectors["co"] + vectors["operate"]) / 2, rtol=1e-6)
    assert r.arrays["oov"].data.tolist() == [False, False, False, False, True]   # quokka
    assert r.meta["n_oov"] == int(r.arrays["oov"].data.sum())
    assert r.meta["source"] == "glove-file" and stage.shard_attrs()["dim"] == DIM
    assert empty.arrays["vectors"].data.shape == (0, DIM) and empty.meta["empty"] == "only bracketed tokens"


def test_oov_vector_zero_or_file_mean(glove_file):
    path, vectors = glove_file
    (zero,) = stage_for(path=str(path)).compute_batch(contexts("quokka cat"))
    assert zero.arrays["oov"].data.tolist() == [True, False]
    assert not zero.arrays["vectors"].data[0].any()
    (mean,) = stage_for(path=str(path), oov="mean").compute_batch(contexts("quokka"))
    np.testing.assert_allclose(mean.arrays["vectors"].data[0], np.mean(list(vectors.values()), 0), rtol=1e-5)
    assert mean.meta["n_oov"] == 1


def test_word2vec_header_is_skipped_and_only_asked_words_are_kept(glove_file, tmp_path):
    path, vectors = glove_file
    with_header = tmp_path / "w2v.txt"
    with_header.write_text(f"{len(VOCAB)} {DIM}\n" + path.read_text())
    stage = stage_for(path=str(with_header))
    (r,) = stage.compute_batch(contexts("zebra mat"))
    np.testing.assert_allclose(r.arrays["vectors"].data, [vectors["zebra"], vectors["mat"]])
    assert set(stage.resources["vectors"].found) == {"zebra", "mat"}


@pytest.mark.parametrize("content, problem", [
    (b"the 0.1 0.2\ncat 0.3\n", "different vector sizes"),
    (b"the 0.1 abc\n", "line 1 is not 'word' followed by numbers"),
    (b"\x00\x01\xff\xfe binary", "line 1 is not 'word' followed by numbers"),
    (b"", "holds no vectors"),
    (gzip.compress(b"the 0.1 0.2\n"), "gzip-compressed"),
])
def test_wrong_format_fails_before_work(tmp_path, content, problem):
    bad = tmp_path / "vectors.txt"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=f"{bad}.*{problem}"):
        resolve(["glove"], {"glove": {"path": str(bad)}})


def test_wrong_dim_fails_before_work(glove_file):
    with pytest.raises(ConfigError, match="6-d vectors but dim=300"):
        resolve(["glove"], {"glove": {"path": str(glove_file[0]), "dim": 300}})


def test_file_digest_is_in_the_identity(glove_file):
    path, _ = glove_file
    before = stage_for(path=str(path)).identity()
    with open(path, "a") as f:
        f.write("dog " + " ".join(["0.5"] * DIM) + "\n")
    after = stage_for(path=str(path)).identity()
    assert before["digest"] != after["digest"] and before["source"] == "glove-file"


def test_fallback_pools_the_model_input_embeddings():
    stage = stage_for()
    (r,) = stage.compute_batch(contexts("the xylophonist"))
    vectors = stage.resources["vectors"]
    tok, table = vectors.tokenizer, vectors.table
    ids = tok("xylophonist", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1
    np.testing.assert_allclose(r.arrays["vectors"].data[1], table[ids].mean(0), rtol=1e-6)
    assert r.arrays["vectors"].data.shape == (2, 384)
    assert r.meta["source"] == "model-input-embeddings" and r.meta["n_oov"] == 0
    assert stage.shard_attrs()["source"] == "model-input-embeddings"
    assert stage.identity()["model_digest"]


def test_options_are_checked(glove_file):
    with pytest.raises(ConfigError, match="oov"):
        make_config(Glove, {"oov": "random"})
