"""A CMU-MOSEI-layout demo corpus (the layout and its quirks: ../shared/CORPORA.md).

Videos are monologues: one speaker (an espeak-ng voice) in front of the
camera saying a few sentences, each sentence one transcript segment. The
video ids are real ones taken from the standard folds (so the splits are the
real protocol's), chosen to include ids with `-`, `_` and a leading `-`.
Files: the MP4 with its sound, the 16 kHz WAV, the segmented transcript and
an HDF5 `CMU_MOSEI_Labels.csd` with the computational sequence's groups
(`All Labels/data/<id>/features|intervals`, `All Labels/metadata`).

Labels are learnable on purpose: each segment is spoken in one of eight
moods whose wording and prosody carry the sentiment's sign and size (from
excited, +2.3..+3, to angry, -2.3..-3) and the matching emotion intensity;
values are multiples of 1/3 like the release's averages of three ratings.

Quirks (named in the truth file): label intervals that differ from their
segment's times by a few tens of milliseconds, one transcript segment without
a label interval, one label interval without a transcript line, and one
video without its WAV (its audio is the MP4's track).
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import DEMO_LAYOUTS, TRUTH_FILE, count, prepare, size_spec
from . import video as vid
from .emotions import sentence, tone
from .speech import SAMPLE_RATE, Synth, mix, words_of, write_wav
from ..corpora.mosei import AUDIO_DIR, LABEL_FILE, LABELS, TRANSCRIPT_DIR, VIDEO_DIR, standard_folds

VERSION = 1
SIZES = {"small": {"train": 2, "valid": 1, "test": 1}, "full": {"train": 24, "valid": 6, "test": 8}}
SEGMENTS = {"small": (3, 4), "full": (5, 8)}          # segments per video: [low, high]
FPS = 30.0

# Mood -> (sentiment range, the emotion it raises): the IEMOCAP-demo code
# whose wording and prosody speak it.
MOODS = {
    "exc": ((7, 9), "happy"),        # sentiment in thirds: +7/3 .. +3
    "hap": ((3, 6), "happy"),
    "sur": ((1, 3), "surprise"),
    "neu": ((-1, 1), None),
    "fea": ((-4, -2), "fear"),
    "sad": ((-6, -3), "sad"),
    "dis": ((-6, -3), "disgust"),
    "ang": ((-9, -7), "anger"),
}
VOICES = (("en+f1", 50), ("en+m1", 44), ("en-us+f2", 54), ("en-us+m2", 48), ("en+f3", 48),
          ("en+m3", 40), ("en-us+f4", 56), ("en+m7", 42))

_PICK, _SEGMENT, _LABEL, _VIDEO, _QUIRKS = range(5)


@dataclass
class Segment:
    video_id: str
    number: int
    mood: str
    text: str
    voice: object
    labels: dict
    start: int = 0                   # samples in the video's audio
    length: int = 0
    label_shift: tuple = (0.0, 0.0)  # label interval minus segment times (s)
    quirk: str | None = None

    @property
    def id(self):
        return f"{self.video_id}___{self.number}"


@DEMO_LAYOUTS.register("mosei")
def make_mosei(out, size="small", seed=0, workers=None) -> dict:
    """Write the corpus to `out` (the CMU_MOSEI folder) and return its truth."""
    spec = size_spec(SIZES, size)
    out = prepare(out, r"Raw|" + LABEL_FILE)
    videos = _pick_videos(spec, seed)
    plan = {v: _plan_video(v, i, SEGMENTS[size], seed) for i, (v, _) in enumerate(videos)}
    quirks = _quirks(plan, seed)
    synth = Synth(workers)
    synth.prefetch((words_of(s.text), s.voice) for segs in plan.values() for s in segs)
    for parts in (VIDEO_DIR, AUDIO_DIR, TRANSCRIPT_DIR):
        out.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(synth.workers) as pool:
        list(pool.map(lambda iv: _write_video(out, *iv, plan[iv[1]], synth, seed,
                                              iv[1] != quirks["video_without_wav"]), enumerate(plan)))
    _write_labels(out / LABEL_FILE, plan)
    truth = _truth(videos, plan, quirks, seed, size)
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return truth


def _pick_videos(counts, seed):
    """[(video id, split)]: real ids of each standard fold, the first of the
    train ones starting with `-` and others holding `-` and `_`."""
    rng = np.random.default_rng([seed, _PICK])
    by_split = {}
    for video_id, split in standard_folds().items():
        by_split.setdefault(split, []).append(video_id)
    chosen = []
    for split, n in counts.items():
        ids = sorted(by_split[split])
        lead = [i for i in ids if i.startswith("-")]
        marked = [i for i in ids if ("-" in i[1:] or "_" in i) and not i.startswith("-")]
        plain = [i for i in ids if i not in lead and i not in marked]
        picks = [str(rng.choice(lead))]
        picks += [str(x) for x in rng.choice(marked, n // 2, replace=False)]
        picks += [str(x) for x in rng.choice(plain, n - len(picks), replace=False)]
        chosen += [(v, split) for v in picks[:n]]
    return chosen


def _plan_video(video_id, index, segment_range, seed):
    rng = np.random.default_rng([seed, _SEGMENT, index])
    name, base_pitch = VOICES[index % len(VOICES)]
    order = [str(m) for m in rng.permutation(list(MOODS))]
    n = int(rng.integers(segment_range[0], segment_range[1] + 1))
    segments = []
    for k in range(n):
        mood = order[k % len(order)]
        segments.append(Segment(video_id, k, mood, sentence(mood, rng), tone(mood, name, base_pitch, rng),
                                _labels(mood, np.random.default_rng([seed, _LABEL, index, k]))))
    return segments


def _labels(mood, rng):
    """Sentiment and the six intensities, in thirds (averages of three raters)."""
    (low, high), emotion = MOODS[mood]
    values = {name: 0.0 for name in LABELS}
    values["sentiment"] = int(rng.integers(low, high + 1)) / 3
    if emotion:
        values[emotion] = int(rng.integers(3, 10)) / 3
    other = str(rng.choice(LABELS[1:]))
    if other != emotion and rng.random() < 0.3:
        values[other] = 1 / 3
    return values


def _quirks(plan, seed):
    """Pick the segments and video that carry the quirks (all different)."""
    rng = np.random.default_rng([seed, _QUIRKS])
    segments = [s for segs in plan.values() for s in segs if len(segs) > 2]
    a, b = rng.choice(len(segments), 2, replace=False)
    segments[a].quirk, segments[b].quirk = "segment_without_label", "label_without_segment"
    for s in (s for segs in plan.values() for s in segs):
        if s.quirk is None and rng.random() < 0.3:
            s.label_shift = (round(float(rng.uniform(-0.04, 0.04)), 3), round(float(rng.uniform(-0.04, 0.04)), 3))
    ids = list(plan)
    return {"segment_without_label": segments[a].id, "label_without_segment": segments[b].id,
            "video_without_wav": ids[len(ids) // 2],
            "shifted_labels": sorted(s.id for segs in plan.values() for s in segs if s.label_shift != (0.0, 0.0))}


def _write_video(out, index, video_id, segments, synth, seed, with_wav):
    """Speak the segments one after another (pauses between), write the MP4
    with its sound, the WAV and the transcript."""
    rng = np.random.default_rng([seed, _VIDEO, index])
    clips, t = [], int(rng.integers(50, 120)) * SAMPLE_RATE // 100
    for s in segments:
        clip, _ = synth.say(words_of(s.text), s.voice, 6, int(rng.integers(8, 20)), int(rng.integers(8, 20)))
        s.start, s.length = t, len(clip)
        clips.append((t, clip))
        t += len(clip) + int(rng.integers(30, 90)) * SAMPLE_RATE // 100
    samples = mix(t, clips, rng)
    if with_wav:
        write_wav(out.joinpath(*AUDIO_DIR, f"{video_id}.wav"), samples)
    person = vid.people((96, 88))[int(rng.integers(2))]
    track = vid.Track(person, vid.WIDTH // 2 - person.size[0] // 2 + int(rng.integers(-30, 31)),
                      int(rng.integers(90, 120)),
                      (float(rng.uniform(3, 6)), float(rng.uniform(2, 4)), float(rng.uniform(3, 6)), 0.0))
    vid.write_clip(out.joinpath(*VIDEO_DIR, f"{video_id}.mp4"), int(np.ceil(t / SAMPLE_RATE * FPS)), [track],
                   samples, SAMPLE_RATE, FPS)
    lines = [f"{video_id}___{s.number}___{_seconds(s.start):.3f}___{_seconds(s.start + s.length):.3f}___{s.text}\n"
             for s in segments if s.quirk != "label_without_segment"]
    out.joinpath(*TRANSCRIPT_DIR, f"{video_id}.txt").write_text("".join(lines))


def _seconds(samples):
    return round(samples / SAMPLE_RATE, 3)


def _interval(s):
    return _seconds(s.start) + s.label_shift[0], _seconds(s.start + s.length) + s.label_shift[1]


def _write_labels(path, plan):
    """The computational sequence as the CMU Multimodal SDK writes it."""
    import h5py
    with h5py.File(path, "w") as f:
        top = f.create_group("All Labels")
        data = top.create_group("data")
        for video_id, segments in plan.items():
            labelled = [s for s in segments if s.quirk != "segment_without_label"]
            group = data.create_group(video_id)
            group.create_dataset("features", data=np.array([[s.labels[k] for k in LABELS] for s in labelled],
                                                           np.float32))
            group.create_dataset("intervals", data=np.array([_interval(s) for s in labelled], np.float64))
        meta = top.create_group("metadata")
        for key, value in _METADATA.items():
            meta.create_dataset(key, data=value, dtype=h5py.string_dtype())


_METADATA = {
    "root name": "All Labels",
    "computational sequence description": "Sentiment and emotion labels of CMU-MOSEI (emocache demo)",
    "computational sequence version": "1.0",
    "alignment compatible": "True",
    "dataset name": "CMU-MOSEI",
    "dataset version": "1.0",
    "creator": "emocache demo corpus",
    "contact": "none",
    "featureset bib citation": "none",
    "dataset bib citation": "none",
    "dimension names": json.dumps(list(LABELS)),
}


def _truth(videos, plan, quirks, seed, size):
    split_of = dict(videos)
    items = {}
    for video_id, segments in plan.items():
        for s in segments:
            if s.quirk == "segment_without_label":
                continue
            start, end = _interval(s)
            name = s.id if s.quirk != "label_without_segment" else \
                f"{video_id}___label{[x for x in segments if x.quirk != 'segment_without_label'].index(s)}"
            items[name] = {
                "video_id": video_id, "split": split_of[video_id], "mood": s.mood, "labels": s.labels,
                "start": start, "end": end,
                "text": None if s.quirk == "label_without_segment" else s.text,
                "audio": "mp4" if video_id == quirks["video_without_wav"] else "wav",
                "voice": {"name": s.voice.name, "pitch": s.voice.pitch, "rate": s.voice.rate,
                          "amplitude": s.voice.amplitude},
            }
    return {
        "layout": "mosei", "version": VERSION, "seed": seed, "size": size, "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "videos": {v: {"split": split, "segments": len(plan[v])} for v, split in videos},
        "items": items,
        "split_counts": count(i["split"] for i in items.values()),
        "mood_counts": count(i["mood"] for i in items.values()),
        "quirks": quirks,
    }
