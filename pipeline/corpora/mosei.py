"""CMU-MOSEI reader (layout and quirks: ../shared/CORPORA.md).

One Item per labelled segment: the label file `CMU_MOSEI_Labels.csd` (an
HDF5 computational sequence, read with h5py) is the list of record, and each
label interval is matched to a segment of the video's segmented transcript
by time: the pair with the largest overlap (intersection over union, at
least `min_overlap`) is taken first, each segment and each label used once.
Nothing is dropped unseen:

- a label interval with no transcript segment still becomes an item (id
  `<video_id>___label<k>`, text None, a warning);
- a transcript segment with no label interval is not an item (it has no
  label) and is listed in the reader's report;
- a video of the label file in none of the standard folds gets split None
  and is listed in the report too.

The standard folds are the CMU Multimodal SDK's (manifests/mosei_folds.toml).
An item's audio is its span of the 16 kHz WAV, or of the video when the
video has no WAV; its video is the same span of the MP4. The speaker of a
YouTube monologue is not annotated, so speaker and session are the video id.
"""
from __future__ import annotations

import os

from ..manifest import Item, Media
from . import CORPORA, Items
from ._text import read_text

LABEL_FILE = "CMU_MOSEI_Labels.csd"
VIDEO_DIR = ("Raw", "Videos", "Full", "Combined")
AUDIO_DIR = ("Raw", "Audio", "Full", "WAV_16000")
TRANSCRIPT_DIR = ("Raw", "Transcript", "Segmented", "Combined")
FOLDS_FILE = "mosei_folds.toml"
# The seven label columns of the .csd features, in their order.
LABELS = ("sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear")
SEPARATOR = "___"


@CORPORA.register("mosei")
def read_mosei(root, min_overlap=0.5, **options) -> Items:
    if options:
        raise ValueError(f"the mosei reader takes only `min_overlap` (got {', '.join(sorted(options))})")
    if not 0 < float(min_overlap) <= 1:
        raise ValueError(f"min_overlap={min_overlap}: must be in (0, 1]")
    root = os.path.abspath(root)
    labels = read_label_file(os.path.join(root, LABEL_FILE))
    folds = standard_folds()
    wavs, videos = _listing(root, AUDIO_DIR), _listing(root, VIDEO_DIR)
    items, report = [], []
    for video_id in sorted(labels):
        segments, problems = _read_segments(root, video_id)
        split = folds.get(video_id)
        if split is None:
            report.append(f"{video_id}: in none of the standard folds; its items have no split")
        matched, unmatched = match_intervals(labels[video_id], segments, float(min_overlap))
        report += [f"{video_id}: transcript segment {s[0]} ({s[1]:.3f}-{s[2]:.3f} s) matches no label "
                   "interval; not an item" for s in unmatched]
        audio = _audio_path(root, video_id, wavs, videos)
        items += [_item(root, video_id, k, label, segment, split, audio, problems)
                  for k, label, segment in matched]
    return Items(items, report)


def read_label_file(path) -> dict:
    """{video id: [(start, end, (7 floats))]} from the computational sequence.

    The file holds one top group (its name varies: `All Labels`, ...) with
    `data/<video id>/features` (N x 7) and `data/<video id>/intervals` (N x 2)."""
    import h5py
    if not os.path.isfile(path):
        raise ValueError(f"CMU-MOSEI label file {path} is missing (point --root at the CMU_MOSEI folder)")
    with h5py.File(path, "r", locking=False) as f:
        tops = [name for name in f if isinstance(f[name], h5py.Group) and "data" in f[name]]
        if len(tops) != 1:
            raise ValueError(f"{path}: expected one computational sequence (a group with data/), "
                             f"found {tops or 'none'}")
        data = f[tops[0]]["data"]
        out = {}
        for video_id in data:
            features, intervals = data[video_id]["features"][()], data[video_id]["intervals"][()]
            if features.ndim != 2 or features.shape[1] != len(LABELS) or len(intervals) != len(features):
                raise ValueError(f"{path}: {video_id}: features {features.shape} and intervals "
                                 f"{intervals.shape} are not N x {len(LABELS)} and N x 2")
            out[video_id] = [(float(a), float(b), tuple(float(x) for x in row))
                             for (a, b), row in zip(intervals, features)]
    return out


def standard_folds() -> dict:
    """{video id: "train" | "valid" | "test"} (the SDK's standard folds)."""
    from ..presets import packaged
    data = packaged(FOLDS_FILE)
    return {video_id: split for split in ("train", "valid", "test") for video_id in data[split]}


def _listing(root, parts):
    try:
        return frozenset(os.listdir(os.path.join(root, *parts)))
    except FileNotFoundError:
        return frozenset()


def _audio_path(root, video_id, wavs, videos):
    """The WAV when the release has one for this video, else the video itself
    (its audio track); with neither, the WAV path, which the stages report missing."""
    if f"{video_id}.wav" not in wavs and f"{video_id}.mp4" in videos:
        return os.path.join(root, *VIDEO_DIR, f"{video_id}.mp4")
    return os.path.join(root, *AUDIO_DIR, f"{video_id}.wav")


def _read_segments(root, video_id):
    """([(segment, start, end, text)], {segment: [warning]}) from the video's
    transcript; a missing transcript gives no segments (the items say so)."""
    path = os.path.join(root, *TRANSCRIPT_DIR, f"{video_id}.txt")
    rel = os.path.relpath(path, root)
    try:
        text, bad_lines = read_text(path)
    except FileNotFoundError:
        return [], {None: [f"transcript {rel} is missing"]}
    prefix = video_id + SEPARATOR
    segments, problems = [], {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        # Split after the known id: ids hold `_` and `-`, the text may hold anything.
        parts = line[len(prefix):].split(SEPARATOR, 3) if line.startswith(prefix) else []
        try:
            segment, start, end, words = parts[0], float(parts[1]), float(parts[2]), parts[3]
        except (IndexError, ValueError):
            problems.setdefault(None, []).append(f"{rel}:{number}: not <video_id>___<seg>___<start>___<end>___<text>")
            continue
        segments.append((segment, start, end, words.strip()))
        if number in bad_lines:
            problems.setdefault(segment, []).append(f"{rel}:{number}: {bad_lines[number]}")
    return segments, problems


def match_intervals(labels, segments, min_overlap):
    """Pair label intervals with transcript segments, best overlap first.

    Returns ([(label index, label, segment or None)] in label order, [segment
    without a label])."""
    pairs = sorted(((_overlap(lab[:2], seg[1:3]), i, j) for i, lab in enumerate(labels)
                    for j, seg in enumerate(segments)), reverse=True)
    of_label, used = {}, set()
    for score, i, j in pairs:
        if score < min_overlap:
            break
        if i not in of_label and j not in used:
            of_label[i] = j
            used.add(j)
    matched = [(i, lab, segments[of_label[i]] if i in of_label else None) for i, lab in enumerate(labels)]
    return matched, [seg for j, seg in enumerate(segments) if j not in used]


def _overlap(a, b):
    """Intersection over union of two (start, end) intervals."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if inter > 0 and union > 0 else 0.0


def _item(root, video_id, k, label, segment, split, audio, problems):
    start, end, values = label
    warnings = list(problems.get(None, ()))
    if segment is None:
        name, text = f"label{k}", None
        warnings.append(f"label interval {k} ({start:.3f}-{end:.3f} s) matches no transcript segment; text unknown")
    else:
        name, text = segment[0], segment[3]
        warnings += problems.get(name, ())
    return Item(
        id=f"{video_id}{SEPARATOR}{name}",
        corpus="mosei",
        audio=Media(audio, start, end),
        video=Media(os.path.join(root, *VIDEO_DIR, f"{video_id}.mp4"), start, end),
        text=text,
        text_clean=text,
        speaker=video_id,
        session=video_id,
        labels=dict(zip(LABELS, values)),
        split=split,
        extra={"video_id": video_id, "segment": None if segment is None else segment[0],
               "transcript_span": None if segment is None else [segment[1], segment[2]]},
        warnings=tuple(warnings),
    )
