"""The shared window rule (pipeline/windows.py): start at 0, step by the hop,
drop a final window that runs past the end, one padded window for an item
shorter than a window, timestamps at window centres."""
import numpy as np
import pytest

from pipeline.windows import cut_windows, sample_windows, time_windows, window_count


@pytest.mark.parametrize("n, win, hop, count", [
    (0, 10, 5, 1),       # empty: still one (padded) window
    (7, 10, 5, 1),       # shorter than one window
    (10, 10, 5, 1),      # exactly one window
    (19, 10, 5, 2),      # one short of a multiple: the last window is dropped
    (20, 10, 5, 3),      # exact multiple
    (21, 10, 5, 3),
    (30, 10, 10, 3),     # hop = window: no overlap
    (29, 10, 10, 2),
])
def test_window_count(n, win, hop, count):
    assert window_count(n, win, hop) == count


def test_bad_window_or_hop():
    with pytest.raises(ValueError):
        window_count(10, 0, 5)
    with pytest.raises(ValueError):
        window_count(10, 5, -1)


def test_sample_windows_bounds_and_centres():
    bounds, centres = sample_windows(32000, 16000, 1.0, 0.5)
    assert bounds == [(0, 16000), (8000, 24000), (16000, 32000)]
    assert centres == [0.5, 1.0, 1.5]
    bounds, centres = sample_windows(31999, 16000, 1.0, 0.5)
    assert bounds == [(0, 16000), (8000, 24000)] and centres == [0.5, 1.0]
    bounds, centres = sample_windows(4800, 16000, 1.0, 0.5)   # 0.3 s: one window past the end
    assert bounds == [(0, 16000)] and centres == [0.5]


@pytest.mark.parametrize("duration, centres", [
    (0.3, [0.5]),
    (1.0, [0.5]),
    (1.5, [0.5, 1.0]),               # 1.5 s is exactly 1 window + 1 hop
    (1.4999, [0.5]),
    (3.0, [0.5, 1.0, 1.5, 2.0, 2.5]),
])
def test_time_windows(duration, centres):
    assert time_windows(duration, 1.0, 0.5) == pytest.approx(centres)


def test_cut_windows_pads_a_short_item_with_silence():
    y = np.arange(1, 4801, dtype=np.float32)
    wins, centres = cut_windows(y, 16000, 1.0, 0.5)
    assert wins.shape == (1, 16000) and centres == [0.5]
    np.testing.assert_array_equal(wins[0, :4800], y)
    assert not wins[0, 4800:].any()


def test_cut_windows_slices_by_the_hop():
    y = np.arange(32000, dtype=np.float32)
    wins, centres = cut_windows(y, 16000, 1.0, 0.5)
    assert wins.shape == (3, 16000) and centres == [0.5, 1.0, 1.5]
    assert [w[0] for w in wins] == [0, 8000, 16000]
    wins, _ = cut_windows(y[:-1], 16000, 1.0, 0.5)
    assert wins.shape == (2, 16000)
