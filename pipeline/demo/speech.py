"""Real speech for demo corpora: espeak-ng, 16 kHz mono 16-bit.

An utterance is synthesised in one espeak-ng call with long pauses forced
between its words (`-g`), cut apart at those pauses, and the words are joined
again on a 10 ms grid with the gaps the caller asks for. That makes every
word's time exact, so the forced-alignment files a demo corpus writes are the
truth, not an estimate. espeak-ng runs a few unstressed words into the next
one ("I am", "out of"); when the pauses do not match the words, that
utterance is synthesised word by word instead.

Each word list is synthesised once per (voice, pitch, rate) in a run;
loudness is applied afterwards as a gain (espeak-ng's amplitude is a plain
gain too), so louder and softer versions share one synthesis.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import gcd

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
FRAME = SAMPLE_RATE // 100          # 10 ms, the frame of IEMOCAP's .wdseg files

# A word's edges: the first and last sample louder than this share of its
# peak, plus a few milliseconds so soft onsets are not clipped.
_EDGE_LEVEL = 0.02
_EDGE_MARGIN = SAMPLE_RATE // 200
# Forced pause between words (espeak-ng -g, 10 ms units at 150 wpm; espeak-ng
# shortens it at higher rates, hence the scaling) and the shortest silence
# taken for such a pause. Silences inside words stay under ~120 ms.
_WORD_GAP_AT_150_WPM = 50
_MIN_PAUSE_S = 0.15
_ENVELOPE_HOP = SAMPLE_RATE // 200         # 5 ms


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice and its prosody settings."""
    name: str                 # espeak-ng voice with variant, e.g. "en+f3"
    pitch: int = 50           # espeak-ng -p, 0..99
    rate: int = 165           # words per minute, espeak-ng -s
    amplitude: int = 100      # loudness in espeak-ng's -a scale (100 = as synthesised)


class Synth:
    """espeak-ng with a per-run cache of synthesised word lists."""

    def __init__(self, workers=None):
        self.workers = workers or os.cpu_count() or 1
        self._clips = {}

    def prefetch(self, requests):
        """Synthesise many (words, Voice) pairs in parallel (espeak-ng runs as
        separate processes, so threads are enough)."""
        todo = sorted({_key(words, v) for words, v in requests} - self._clips.keys())
        with ThreadPoolExecutor(self.workers) as pool:
            for key, clips in zip(todo, pool.map(_synthesise, todo)):
                self._clips[key] = clips

    def words(self, words, voice) -> list:
        """Each word as float32 samples at gain 1, silence trimmed."""
        key = _key(words, voice)
        if key not in self._clips:
            self._clips[key] = _synthesise(key)
        return self._clips[key]

    def say(self, words, voice, gap_frames=6, lead_frames=20, tail_frames=15):
        """Speak `words` one after another.

        Returns int16 samples and, per word, its (first frame, end frame) in
        10 ms frames from the clip's start. Words start on frame boundaries and
        are padded with silence to whole frames; gaps are whole frames too.
        """
        clips = self.words(words, voice)
        sizes = [-(-len(c) // FRAME) for c in clips]            # ceil to whole frames
        total = lead_frames + sum(sizes) + gap_frames * (len(clips) - 1) + tail_frames
        out = np.zeros(total * FRAME, np.float32)
        spans, frame = [], lead_frames
        for clip, size in zip(clips, sizes):
            out[frame * FRAME:frame * FRAME + len(clip)] = clip
            spans.append((frame, frame + size))
            frame += size + gap_frames
        return to_int16(out * (voice.amplitude / 100)), spans


def _key(words, voice):
    return tuple(w.lower() for w in words), voice.name, voice.pitch, voice.rate


def _synthesise(key) -> list:
    words, name, pitch, rate = key
    gap = round(_WORD_GAP_AT_150_WPM * rate / 150)
    clips = _split(_espeak(" ".join(words), name, pitch, rate, gap), len(words))
    if clips is None:
        clips = [_trim(_espeak(w, name, pitch, rate, 0)) for w in words]
    return clips


def _espeak(text, name, pitch, rate, gap):
    command = ["espeak-ng", "-v", name, "-p", str(pitch), "-s", str(rate), "-g", str(gap), "--stdout", text]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(f"espeak-ng failed for {text!r} with voice {name}: "
                           f"{result.stderr.decode(errors='replace').strip()}")
    samples, rate_in = sf.read(io.BytesIO(result.stdout), dtype="float32")
    return resample(samples, rate_in, SAMPLE_RATE)


def _split(x, n_words):
    """Cut x at its silences of at least _MIN_PAUSE_S; None unless that gives
    exactly n_words pieces."""
    hops = len(x) // _ENVELOPE_HOP
    envelope = np.abs(x[:hops * _ENVELOPE_HOP]).reshape(hops, _ENVELOPE_HOP).max(axis=1)
    loud = envelope > _EDGE_LEVEL * envelope.max(initial=1e-9)
    edges = np.diff(np.concatenate([[1], loud.astype(np.int8), [1]]))
    quiet = zip(np.flatnonzero(edges == -1), np.flatnonzero(edges == 1))   # [start, end) in hops
    inner = [(a, b) for a, b in quiet if a > 0 and b < hops]               # not leading/trailing
    pauses = [(a, b) for a, b in inner if (b - a) * _ENVELOPE_HOP >= _MIN_PAUSE_S * SAMPLE_RATE]
    if len(pauses) != n_words - 1:
        return None
    cuts = [0] + [(a + b) // 2 * _ENVELOPE_HOP for a, b in pauses] + [len(x)]
    return [_trim(x[c0:c1]) for c0, c1 in zip(cuts, cuts[1:])]


def _trim(x):
    loud = np.flatnonzero(np.abs(x) > _EDGE_LEVEL * np.abs(x).max(initial=1e-9))
    if loud.size == 0:
        return x[:0]
    return x[max(loud[0] - _EDGE_MARGIN, 0):loud[-1] + _EDGE_MARGIN + 1].copy()


def words_of(text) -> list:
    """The words espeak-ng is asked to say: (Latin) letters and apostrophes,
    curly ones made straight; no other punctuation."""
    return re.findall(r"[A-Za-z\u00c0-\u024f']+", text.replace("\u2019", "'"))


def mix(length, placed, rng, floor=4 / 32768):
    """int16 track of `length` samples: a faint noise floor from `rng` (so no
    two tracks share bytes, even when they reuse a synthesis) with the int16
    clips of `placed` [(first sample, clip)] added in."""
    signal = rng.normal(0, floor, length).astype(np.float32)
    for start, clip in placed:
        signal[start:start + len(clip)] += clip[:max(length - start, 0)] / 32768
    return to_int16(signal)


def resample(x, rate_in, rate_out):
    """Polyphase resampling along the first axis (deterministic, no state)."""
    if rate_in == rate_out:
        return x
    from scipy.signal import resample_poly
    g = gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g, axis=0).astype(np.float32)


def to_int16(x) -> np.ndarray:
    """Float samples in [-1, 1] to int16, clipped."""
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)


def write_wav(path, samples, rate=SAMPLE_RATE):
    """16-bit PCM WAV; int16 samples are written unchanged."""
    sf.write(path, samples, rate, subtype="PCM_16", format="WAV")
