"""fbank and mfcc equal librosa called directly with the same parameters."""
import librosa
import numpy as np
import pytest
import soundfile as sf

from pipeline.api import Cache
from tests.helpers import extract, make_table_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_table_corpus(tmp_path_factory.mktemp("tbl"), n=3)


def _direct_logmel(path, n_mels, deltas, start=None, end=None):
    y, sr = librosa.load(path, sr=16000, mono=True, offset=start or 0.0,
                         duration=None if end is None else end - (start or 0.0), res_type="soxr_hq")
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                       window="hamming", n_mels=n_mels, power=2.0)
    feat = np.log(np.maximum(S, 1e-10))
    parts = [feat] + [librosa.feature.delta(feat, order=k) for k in range(1, deltas + 1)]
    return np.concatenate(parts).T


def test_fbank_equals_librosa(corpus, tmp_path):
    cache = tmp_path / "c"
    assert extract(corpus, cache, "--stages", "fbank", "--set", "fbank.deltas=2", "--set", "fbank.n_mels=64") == 0
    feats = Cache(cache).load("fbank", ["u0", "u1"], overrides={"fbank": {"deltas": 2, "n_mels": 64}})
    for i in (0, 1):
        got = feats[f"u{i}"].arrays["fbank"]
        want = _direct_logmel(corpus.parent / f"utt{i}.wav", 64, 2)
        assert got.shape == want.shape == (want.shape[0], 192)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
        t = feats[f"u{i}"].times["fbank"]
        assert t[1] - t[0] == pytest.approx(0.01)


def test_mfcc_equals_librosa(corpus, tmp_path):
    cache = tmp_path / "c"
    assert extract(corpus, cache, "--stages", "mfcc") == 0
    got = Cache(cache).load("mfcc", ["u2"])["u2"].arrays["mfcc"]
    y, _ = librosa.load(corpus.parent / "utt2.wav", sr=16000, res_type="soxr_hq")
    S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                       window="hamming", n_mels=40)
    m = librosa.feature.mfcc(S=librosa.power_to_db(S), n_mfcc=13)
    want = np.concatenate([m, librosa.feature.delta(m), librosa.feature.delta(m, order=2)]).T
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_stereo_44k_is_downmixed_and_resampled(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.standard_normal((44100, 2)).astype(np.float32) * 0.1
    sf.write(tmp_path / "st.wav", y, 44100)
    (tmp_path / "t.csv").write_text("id,audio\nst,st.wav\n")
    assert extract(tmp_path / "t.csv", tmp_path / "c", "--stages", "fbank") == 0
    got = Cache(tmp_path / "c").load("fbank", ["st"])["st"].arrays["fbank"]
    y, _ = sf.read(tmp_path / "st.wav", dtype="float32")   # as stored: 16-bit PCM
    mono = librosa.resample(y.mean(axis=1), orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    S = librosa.feature.melspectrogram(y=mono, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                       window="hamming", n_mels=80)
    np.testing.assert_allclose(got, np.log(np.maximum(S, 1e-10)).T, rtol=1e-4, atol=1e-3)


def test_span_is_respected(tmp_path):
    y = np.sin(np.linspace(0, 2000, 48000)).astype(np.float32)
    sf.write(tmp_path / "a.wav", y, 16000)
    (tmp_path / "t.csv").write_text("id,audio,start,end\nx,a.wav,0.5,2.0\n")
    assert extract(tmp_path / "t.csv", tmp_path / "c", "--stages", "fbank") == 0
    got = Cache(tmp_path / "c").load("fbank", ["x"])["x"].arrays["fbank"]
    np.testing.assert_allclose(got, _direct_logmel(tmp_path / "a.wav", 80, 0, 0.5, 2.0), rtol=1e-4, atol=1e-3)
