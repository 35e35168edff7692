"""Aff-Wild2 reader, ABAW expression task (layout and quirks: ../shared/CORPORA.md).

One Item per annotation file of `Annotations/EXPR_Classification_Challenge/
{Train_Set,Validation_Set}/<name>.txt`: one subject of one video with its
per-frame expression labels (0..7, -1 = frame to ignore; -1 stays in the
list so that list index = 0-based frame index; training drops it). A name
ending in `_left` / `_right` is one of the two people of video `<name minus
the suffix>`, and the Item's video region says which half of the picture to
look at. The audio is the video's own track.

Videos are looked up in `videos/batch1` and `videos/batch2` (`.mp4` or
`.avi`). Their frame count and rate come from the container (OpenCV,
without decoding every frame); where the annotation has a different number
of lines than the video has frames, labels stay aligned by index and the
difference (annotated - decoded) is put in `extra["frame_drift"]`, in the
item's warnings and in the reader's report. An annotation whose video is
missing is kept with a warning (the video stages report the missing file);
an annotation file that cannot be parsed is not an item and is reported.
"""
from __future__ import annotations

import os

from ..manifest import Item, Media
from . import CORPORA, Items, no_options

ANNOTATION_DIR = ("Annotations", "EXPR_Classification_Challenge")
SPLITS = {"Train_Set": "train", "Validation_Set": "validation"}
VIDEO_BATCHES = ("batch1", "batch2")
VIDEO_SUFFIXES = (".mp4", ".avi")
HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
CLASSES = tuple(HEADER.split(","))
IGNORE = -1
SIDES = ("left", "right")


@CORPORA.register("affwild2")
def read_affwild2(root, **options) -> Items:
    no_options("affwild2", options)
    root = os.path.abspath(root)
    annotations = _annotation_files(root)
    videos = _video_files(root)
    items, report, seen = [], [], {}
    for split, name, path in annotations:
        if name in seen:
            report.append(f"{name}: annotated in both {seen[name]} and {split}; the {split} file is ignored")
            continue
        seen[name] = split
        try:
            labels = read_annotation(path)
        except ValueError as e:
            report.append(f"{os.path.relpath(path, root)}: {e}; not an item")
            continue
        item = _item(root, name, split, labels, videos)
        items.append(item)
        drift = item.extra.get("frame_drift")
        if drift:
            report.append(f"{name}: {len(labels)} annotated frames, the video has "
                          f"{item.extra['video_frames']} (drift {drift:+d}); labels aligned by frame index")
    return Items(items, report)


def _annotation_files(root):
    """[(split, name, path)] sorted by split then name."""
    base = os.path.join(root, *ANNOTATION_DIR)
    if not os.path.isdir(base):
        raise ValueError(f"Aff-Wild2 root {root} has no {'/'.join(ANNOTATION_DIR)} folder "
                         "(point --root at the Aff-Wild2 folder)")
    found = []
    for folder, split in SPLITS.items():
        directory = os.path.join(base, folder)
        if os.path.isdir(directory):
            found += [(split, n[:-4], os.path.join(directory, n)) for n in sorted(os.listdir(directory))
                      if n.endswith(".txt") and not n.startswith(".")]
    if not found:
        raise ValueError(f"{base} holds no annotation files in {' or '.join(SPLITS)}")
    return found


def _video_files(root):
    """{video name: path}; batch1 before batch2, .mp4 before .avi."""
    out = {}
    for batch in VIDEO_BATCHES:
        directory = os.path.join(root, "videos", batch)
        if not os.path.isdir(directory):
            continue
        for n in sorted(os.listdir(directory), key=lambda n: (os.path.splitext(n)[0], n.endswith(".avi"))):
            stem, suffix = os.path.splitext(n)
            if suffix.lower() in VIDEO_SUFFIXES:
                out.setdefault(stem, os.path.join(directory, n))
    return out


def read_annotation(path) -> list:
    """The per-frame labels of one annotation file (header line, then one
    integer per frame); ValueError naming the line when it is malformed."""
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8-sig", errors="replace").splitlines()
    if not lines or lines[0].strip().replace(" ", "") != HEADER:
        raise ValueError(f"first line is not the header {HEADER!r}")
    labels = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            value = int(line.strip())
        except ValueError:
            raise ValueError(f"line {number}: {line.strip()!r} is not an integer") from None
        if not IGNORE <= value < len(CLASSES):
            raise ValueError(f"line {number}: {value} is not a class (0..{len(CLASSES) - 1}) or -1")
        labels.append(value)
    if not labels:
        raise ValueError("no frame labels")
    return labels


def subject_of(name):
    """(video name, region): `10-60-1280x720_right` -> ("10-60-1280x720", "right")."""
    for side in SIDES:
        if name.endswith("_" + side):
            return name[:-len(side) - 1], side
    return name, None


def _item(root, name, split, labels, videos):
    video_name, region = subject_of(name)
    warnings = []
    extra = {"annotated_frames": len(labels)}
    path = videos.get(video_name)
    if path is None:
        warnings.append(f"no video {video_name}.mp4/.avi in videos/{'|'.join(VIDEO_BATCHES)}")
        path = os.path.join(root, "videos", VIDEO_BATCHES[0], video_name + VIDEO_SUFFIXES[0])
    else:
        fps, frames = video_frames(path)
        extra.update(fps=fps, video_frames=frames)
        if frames is None:
            warnings.append(f"cannot read the frame count of {path}")
        else:
            extra["frame_drift"] = len(labels) - frames
        if frames is not None and frames != len(labels):
            warnings.append(f"{len(labels)} annotated frames, {frames} in the video; aligned by frame index")
    return Item(
        id=name,
        corpus="affwild2",
        video=Media(path, region=region),
        audio=Media(path),
        speaker=name,
        session=video_name,
        labels={"expression": labels},
        split=split,
        extra={"video": video_name, **extra},
        warnings=tuple(warnings),
    )


def video_frames(path):
    """(fps, frame count) from the container; (None, None) when OpenCV cannot open it."""
    import cv2
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            return None, None
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return (fps if fps > 0 else None), (frames if frames > 0 else None)
    finally:
        capture.release()
