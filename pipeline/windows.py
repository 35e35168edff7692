"""The one window rule shared by every windowed stage (windowed openSMILE
functionals, DeepSpectrum, the 2 Hz vision sampling).

Windows start at 0 and step by the hop. A final window that would run past
the end is dropped, except that an item shorter than one window gets exactly
one window (its missing part is padded with silence by the stage). A
window's timestamp is its centre, in seconds of the item's time.
"""
from __future__ import annotations

import math


def window_count(n: int, win: int, hop: int) -> int:
    """Number of windows over n units (samples or frames) with window/hop in the same units."""
    if win <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if n < win:
        return 1
    return (n - win) // hop + 1


def sample_windows(n_samples: int, sr: int, win_s: float, hop_s: float):
    """[(start, stop)] sample bounds (stop may exceed n_samples only for the
    single padded window) and centre times in seconds."""
    win, hop = int(round(win_s * sr)), int(round(hop_s * sr))
    bounds = [(k * hop, k * hop + win) for k in range(window_count(n_samples, win, hop))]
    centres = [(a + win / 2) / sr for a, _ in bounds]
    return bounds, centres


def time_windows(duration_s: float, win_s: float, hop_s: float):
    """Centre times (seconds) of the windows over a span of `duration_s`.

    Computed on a microsecond grid so that exact multiples are not lost to
    floating-point error (1.5 s of 0.5 s hops is 3 hops, not 2.999...).
    """
    us = 1_000_000
    n = window_count(int(math.floor(duration_s * us + 0.5)), int(round(win_s * us)), int(round(hop_s * us)))
    return [k * hop_s + win_s / 2 for k in range(n)]


def cut_windows(y, sr: int, win_s: float, hop_s: float):
    """(n_windows, win) array of the windows of signal `y` by the rule above
    (the single window of a short item padded with zeros = silence), and
    their centre times in seconds."""
    import numpy as np
    bounds, centres = sample_windows(len(y), sr, win_s, hop_s)
    win = bounds[0][1] - bounds[0][0]
    if len(y) < win:
        y = np.pad(y, (0, win - len(y)))
    return np.stack([y[a:b] for a, b in bounds]), centres
