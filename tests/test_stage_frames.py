"""The frames stage: whole-frame CNN embeddings of sampled video frames."""
import numpy as np
import pytest

from pipeline.context import ItemContext
from pipeline.demo import video as vid
from pipeline.manifest import Item, Media
from pipeline.stage import ItemError, make_config
from pipeline.stages import load_all

RANDOM = {"weights": "random", "seed": 0, "size": 64}


@pytest.fixture(scope="module")
def dialog(tmp_path_factory):
    path = tmp_path_factory.mktemp("frames") / "dialog.avi"
    left, right = vid.people()
    vid.write_video(path, 40, [vid.Track(left, 90, 120, away=((20, 40),)), vid.Track(right, 450, 110)])
    return str(path)


def stage(**options):
    cls = load_all()["frames"]
    s = cls(make_config(cls, {**RANDOM, **options}))
    s.validate()
    return s


def run(s, path, start=None, end=None):
    return s.compute(ItemContext(Item("u1", "test", video=Media(path, start, end)), {}))


def test_embeddings_per_sampled_frame(dialog):
    r = run(stage(every=5, batch_size=3), dialog, 0.1)
    frames = r.arrays["frame"].data
    emb = r.arrays["embedding"].data
    assert list(frames) == list(range(3, 40, 5))      # every 5th from the span's first frame
    assert emb.shape == (len(frames), 512) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.allclose(r.arrays["embedding"].times, frames / r.meta["fps"] - 0.1)
    # Frames 3..18 look alike (both people, small sway); from frame 20 the left one is gone.
    d_same = np.linalg.norm(emb[1] - emb[0])
    d_change = np.linalg.norm(emb[4] - emb[0])
    assert d_change > d_same


def test_same_seed_same_features_whatever_the_batching(dialog):
    a = run(stage(every=5, batch_size=2), dialog).arrays["embedding"].data
    b = run(stage(every=5, batch_size=32), dialog).arrays["embedding"].data
    assert np.allclose(a, b, atol=1e-4)
    c = run(stage(every=5, seed=1), dialog).arrays["embedding"].data
    assert not np.allclose(a, c)


def test_rate_sampling_and_truncation(dialog):
    r = run(stage(rate_hz=2.0, every=1), dialog, 0.0, 2.0)     # the video lasts 1.33 s
    assert np.allclose(r.arrays["frame"].times, [0.5, 1.0])
    assert r.meta["truncated"] and r.meta["missing_frames"] == 60 - 40


def test_missing_video_is_an_item_error(tmp_path):
    with pytest.raises(ItemError, match="not found"):
        run(stage(), str(tmp_path / "none.avi"))
