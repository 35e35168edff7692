"""An Aff-Wild2-layout demo corpus, ABAW expression task (the layout and its
quirks: ../shared/CORPORA.md).

Videos of one person, or of two people side by side (annotated separately
as `<video>_left` and `<video>_right`), in `videos/batch1` (.mp4) and
`videos/batch2` (.avi), 720x480 at 30 fps, with a sound track; one
annotation file per subject in `Train_Set` or `Validation_Set`.

Labels are learnable on purpose: each subject goes through runs of 3-6 s
(about 1.5 s in the small corpus) of one expression, and the expression
changes the shape of the face (the photo stretched or squashed vertically
and sheared, per class; see `LOOKS`), which the face stage's landmark
geometry and blendshapes measure after removing position, roll and size.
The first subject of each video also speaks one sentence per run in the
expression's wording and prosody. Frames where a subject steps out of the
picture are annotated -1.

Quirks (named in the truth file): annotation files with a few lines more or
fewer than the video has frames (frame-count drift), two-person videos with
left/right subjects, both containers.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from . import DEMO_LAYOUTS, TRUTH_FILE, count, prepare, size_spec
from . import video as vid
from .emotions import sentence, tone
from .speech import SAMPLE_RATE, Synth, mix, words_of
from ..corpora.affwild2 import ANNOTATION_DIR, CLASSES, HEADER, IGNORE

VERSION = 1
FPS = 30.0
# (split, two people?, container) per video.
SIZES = {
    "small": {"seconds": 6, "run": (40, 50), "videos": [("train", True, ".mp4"), ("train", False, ".avi"),
                                                        ("validation", False, ".mp4")]},
    "full": {"seconds": 36, "run": (90, 180),
             "videos": [("train", True, ".mp4"), ("train", False, ".avi"), ("train", True, ".avi"),
                        ("train", False, ".mp4"), ("train", True, ".mp4"), ("train", False, ".avi"),
                        ("train", False, ".mp4"), ("validation", True, ".mp4"), ("validation", False, ".avi"),
                        ("validation", False, ".mp4")]},
}
# Per expression class (CLASSES order): vertical stretch and shear of the face.
LOOKS = ((1.0, 0.0), (0.84, 0.0), (0.84, 0.22), (1.0, 0.22), (1.18, 0.0), (1.18, -0.22), (1.18, 0.22),
         (1.0, -0.22))
# The emotion rows (pipeline/demo/emotions.py) that speak each class.
SPOKEN = ("neu", "ang", "dis", "fea", "hap", "sad", "sur", "fru")
VOICES = (("en+f1", 50), ("en+m1", 44), ("en-us+f2", 54), ("en-us+m2", 48), ("en+f3", 48), ("en+m3", 40))
DRIFTS = (0, 2, -3, 0, 1, -1)               # annotated - video frames, cycled over the videos

_RUNS, _VIDEO, _SPEECH = range(3)


@dataclass
class Subject:
    name: str
    side: str | None                 # left | right | None (alone in the picture)
    labels: list = field(default_factory=list)     # per video frame
    runs: list = field(default_factory=list)       # (first frame, end frame, class)
    away: tuple = ()                 # (first, end) out of the picture


@dataclass
class Video:
    index: int
    name: str
    split: str
    suffix: str
    frames: int
    drift: int
    subjects: list

    @property
    def path(self):
        return f"videos/batch{1 if self.suffix == '.mp4' else 2}/{self.name}{self.suffix}"


@DEMO_LAYOUTS.register("affwild2")
def make_affwild2(out, size="small", seed=0, workers=None) -> dict:
    """Write the corpus to `out` (the Aff-Wild2 folder) and return its truth."""
    spec = size_spec(SIZES, size)
    out = prepare(out, "videos|Annotations")
    videos = [_plan(i, split, two, suffix, spec, seed) for i, (split, two, suffix) in enumerate(spec["videos"])]
    synth = Synth(workers)
    synth.prefetch(r for v in videos for r in _requests(v, seed))
    for folder in ("batch1", "batch2"):
        (out / "videos" / folder).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(synth.workers) as pool:
        list(pool.map(lambda v: _write(out, v, synth, seed), videos))
    truth = _truth(videos, seed, size)
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return truth


def _plan(index, split, two, suffix, spec, seed):
    rng = np.random.default_rng([seed, _RUNS, index])
    frames = int(spec["seconds"] * FPS) + int(rng.integers(0, 30))
    name = f"{index + 1}-30-{vid.WIDTH}x{vid.HEIGHT}" if two else f"video{index + 1}"
    sides = ("left", "right") if two else (None,)
    subjects = []
    for k, side in enumerate(sides):
        subject = Subject(f"{name}_{side}" if side else name, side)
        _expressions(subject, frames, spec["run"], index * 2 + k, rng)
        subjects.append(subject)
    return Video(index, name, split, suffix, frames, DRIFTS[index % len(DRIFTS)], subjects)


def _expressions(subject, frames, run, offset, rng):
    """Runs of one class each, classes cycled from a shuffled order (so every
    class appears about equally often), one stretch out of the picture (-1)."""
    order = [int(c) for c in rng.permutation(len(CLASSES))]
    frame, k = 0, offset
    while frame < frames:
        end = min(frames, frame + int(rng.integers(run[0], run[1] + 1)))
        subject.runs.append((frame, end, order[k % len(order)]))
        frame, k = end, k + 1
    labels = np.zeros(frames, np.int64)
    for a, b, c in subject.runs:
        labels[a:b] = c
    gap = int(rng.integers(15, 25))
    first = int(rng.integers(frames // 4, frames - gap - frames // 4))
    subject.away = (first, first + gap)
    labels[first:first + gap] = IGNORE
    subject.labels = [int(x) for x in labels]


def _speaker_rng(video, seed):
    return np.random.default_rng([seed, _SPEECH, video.index])


def _speech_plan(video, seed):
    """[(first sample, words, Voice)] for the first subject: one sentence per run."""
    rng = _speaker_rng(video, seed)
    name, base_pitch = VOICES[video.index % len(VOICES)]
    plan = []
    for a, b, c in video.subjects[0].runs:
        code = SPOKEN[c]
        plan.append((int(a / FPS * SAMPLE_RATE) + SAMPLE_RATE // 5, words_of(sentence(code, rng)),
                     tone(code, name, base_pitch, rng)))
    return plan


def _requests(video, seed):
    return [(words, voice) for _, words, voice in _speech_plan(video, seed)]


def _write(out, video, synth, seed):
    length = int(np.ceil(video.frames / FPS * SAMPLE_RATE))
    placed = [(start, synth.say(words, voice, 6, 0, 0)[0]) for start, words, voice in _speech_plan(video, seed)]
    samples = mix(length, placed, np.random.default_rng([seed, _VIDEO, video.index, 1]))
    vid.write_clip(out / video.path, video.frames, _tracks(video, seed), samples, SAMPLE_RATE, FPS)
    for subject in video.subjects:
        folder = out.joinpath(*ANNOTATION_DIR, "Train_Set" if video.split == "train" else "Validation_Set")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{subject.name}.txt").write_text(_annotation(subject.labels, video.drift))


def _annotation(labels, drift):
    """The header and one label per frame, `drift` lines more (the last label
    repeated) or fewer than the video has frames."""
    written = labels[:len(labels) + drift] if drift < 0 else labels + [labels[-1]] * drift
    return HEADER + "\n" + "".join(f"{x}\n" for x in written)


def _tracks(video, seed):
    rng = np.random.default_rng([seed, _VIDEO, video.index])
    tracks = []
    for subject in video.subjects:
        which = 1 if subject.side == "right" else 0
        person = _people()[which]
        # A lone subject sits in the left half too: the face stage finds it with a
        # whole-frame search and with a search of each half (which would cut a
        # face in the middle of the picture in two).
        centre = 3 * vid.WIDTH // 4 if subject.side == "right" else vid.WIDTH // 4
        looks = tuple((a, b, _look(which, c)) for a, b, c in subject.runs if c != 0)
        tracks.append(vid.Track(person, centre - person.size[0] // 2 + int(rng.integers(-10, 11)),
                                int(rng.integers(40, 80)),
                                (float(rng.uniform(2, 4)), float(rng.uniform(1, 3)), float(rng.uniform(3, 6)),
                                 float(rng.uniform(0, 2 * np.pi))),
                                (subject.away,), looks))
    return tracks


@lru_cache(maxsize=None)
def _people():
    return vid.people((110, 100))


@lru_cache(maxsize=None)
def _look(which, cls):
    """The person's face in expression `cls`: made once, so frames showing the
    same look are the same object and are composed once."""
    stretch, shear = LOOKS[cls]
    return vid.warped(_people()[which], stretch, shear)


def _truth(videos, seed, size):
    subjects = {}
    for v in videos:
        for s in v.subjects:
            written = len(s.labels) + v.drift
            subjects[s.name] = {
                "video": v.name, "path": v.path, "split": v.split, "side": s.side,
                "video_frames": v.frames, "annotated_frames": written, "frame_drift": v.drift,
                "labels": (s.labels + [s.labels[-1]] * v.drift)[:written],
                "runs": [list(r) for r in s.runs], "away_frames": list(s.away),
            }
    labelled = [x for s in subjects.values() for x in s["labels"]]
    return {
        "layout": "affwild2", "version": VERSION, "seed": seed, "size": size, "fps": FPS,
        "width": vid.WIDTH, "height": vid.HEIGHT, "classes": list(CLASSES),
        "looks": {c: list(look) for c, look in zip(CLASSES, LOOKS)},
        "subjects": subjects,
        "videos": {v.name: {"path": v.path, "split": v.split, "frames": v.frames, "drift": v.drift,
                            "subjects": [s.name for s in v.subjects]} for v in videos},
        "frame_counts": {CLASSES[c] if c >= 0 else "ignore": n for c, n in count(labelled).items()},
        "split_counts": count(s["split"] for s in subjects.values()),
    }
