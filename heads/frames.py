"""Per-frame training data: windows on a common timeline, cut from whole items.

For corpora labelled frame by frame (Aff-Wild2's expressions): an item is a
whole video with one label per frame, and a training example is the window
of `steps` timeline steps that ends at a target frame (MODELS.md §4). The
items' stage outputs are read once (whole shards, through heads/data.py)
and each item's streams are put on one timeline of `step_s` steps (2 Hz):
a step holds the mean of the stream's steps whose times fall in it, and a
step that none fall in takes the nearest step that has some (the streams
come at different rates: face ~6 Hz, audio and pose 2 Hz). Where a stage
flags its steps (`found`: a face or a person was detected), only flagged
steps count. The window's last step of the anchor stream (the face) is the
current vector rather than a mean: the sampled frame nearest the target
frame among those where the face was found, so a head reads the current
face as the last valid step of its face input.

A video in which the face was never found is kept, as ABAW scores every
labelled frame: its anchor is what the stage stores for "no face" at each
sampled frame (zeros), and `no_face` counts, per item, the labelled frames
whose nearest sampled frame had no face, so a run can say how many of its
scores came from filled features.

Frames the label set drops (Aff-Wild2's -1) are never targets. Training
takes every `train_every`-th labelled frame of an item (frames between two
face samples differ only in labels, not inputs); evaluation takes every
labelled frame, since the measure is per frame. An example's id is
`<item id>@<frame>`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from pipeline import labels as labelsets

from .data import Data
from .standardize import apply_speaker_stats

DROPPED = -1                        # a frame the label set leaves out


@dataclass(frozen=True)
class Timeline:
    """How per-frame items become windows (the head's options)."""
    step_s: float = 0.5             # the common timeline's step (2 Hz)
    steps: int = 12                 # window length T, in steps
    anchor: str = "face"            # input whose last window step is the current vector
    frame_array: str = "frame"      # the anchor stage's sampled frame indices
    found_array: str = "found"      # a stage's "detected" flags, where it has them ("" = none)
    train_every: int = 1            # training targets: every n-th labelled frame of an item


@dataclass
class ItemFrames:
    """One item on the timeline: what every window of it is cut from."""
    labels: np.ndarray              # (frames,) class index per frame, DROPPED where left out
    fps: float
    streams: dict                   # input name -> (timeline steps, width) float32
    anchor_frames: np.ndarray       # (n,) sampled frame indices where the anchor was found, sorted
    anchor_values: np.ndarray       # (n, width) the anchor's values at those frames
    no_face: int = 0                # labelled frames whose nearest sampled frame had no face
    faceless: bool = False          # no face found anywhere in the item

    def step_of(self, frame, step_s) -> int:
        n = len(next(iter(self.streams.values())))
        return min(int(frame / self.fps / step_s), n - 1)

    def current(self, frame) -> np.ndarray:
        return self.anchor_values[nearest(self.anchor_frames, [frame])[0]]


def timeline_steps(n_frames, fps, step_s) -> int:
    """Steps of a timeline that covers frames 0 .. n_frames - 1."""
    return int((n_frames - 1) / fps / step_s) + 1


def to_timeline(values, times, n_steps, step_s, usable=None) -> np.ndarray:
    """(n_steps, width): per step, the mean of the usable observations whose
    time falls in it (observations past the end count in the last step); a
    step with none takes the values of the nearest step that has some
    (the earlier one on a tie). ValueError when nothing is usable."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    keep = np.ones(len(values), bool) if usable is None else np.asarray(usable, bool).reshape(-1)
    if not keep.any():
        raise ValueError("no usable steps")
    index = np.clip((np.asarray(times, dtype=np.float64)[keep] / step_s).astype(np.int64), 0, n_steps - 1)
    sums = np.zeros((n_steps, values.shape[1]))
    counts = np.zeros(n_steps)
    np.add.at(sums, index, values[keep])
    np.add.at(counts, index, 1)
    filled = np.flatnonzero(counts)
    means = sums[filled] / counts[filled, None]
    source = nearest(filled, np.arange(n_steps))
    return means[source].astype(np.float32)


def nearest(sorted_values, targets) -> np.ndarray:
    """Index into `sorted_values` of the value nearest each target (the
    smaller one on a tie)."""
    sorted_values = np.asarray(sorted_values)
    targets = np.asarray(targets)
    right = np.clip(np.searchsorted(sorted_values, targets), 1, len(sorted_values) - 1)
    left = right - 1
    if len(sorted_values) == 1:
        return np.zeros(len(targets), dtype=np.int64)
    take_right = np.abs(sorted_values[right] - targets) < np.abs(targets - sorted_values[left])
    return np.where(take_right, right, left)


class FrameData(Data):
    """Per-frame labelled items with the inputs a head needs, as windows.

    Items whose streams cannot be put on the timeline (no frame rate, no
    frame where the anchor was found, an empty stream) are dropped with the
    reason, like items whose extraction failed."""

    def __init__(self, cache, dataset, inputs: dict, labelset: str, timeline: Timeline, overrides=None):
        self.timeline = timeline
        if timeline.anchor not in inputs:
            raise ValueError(f"timeline anchor {timeline.anchor!r} is not among the inputs {list(inputs)}")
        self._frames = {}
        self.no_face = {}           # item id -> (labelled frames without a face, no face at all)
        super().__init__(cache, dataset, inputs, labelset, overrides)
        for item_id in list(self.items):
            try:
                f = self.frames(item_id)
                if f.no_face:
                    self.no_face[item_id] = (f.no_face, f.faceless)
            except ValueError as e:
                self.dropped[item_id] = str(e)
                del self.items[item_id], self.labels[item_id]

    def label_items(self, items) -> list:
        """[(item, per-frame class indices)] for items with a labelled frame."""
        mapping = labelsets.label_set(self.corpus, self.labelset)
        key = labelsets.label_key(self.corpus, self.labelset)
        index = {str(code): self.classes.index(c) for code, c in mapping.items()}
        out = []
        for it in items:
            codes = it.labels.get(key)
            if not isinstance(codes, (list, tuple)):
                continue                # not labelled per frame
            frames = np.array([index.get(str(c), DROPPED) for c in codes], dtype=np.int64)
            if (frames != DROPPED).any():
                out.append((it, frames))
        return out

    def frames(self, item_id) -> ItemFrames:
        """The item on the timeline (built on first use, then kept)."""
        if item_id not in self._frames:
            self._frames[item_id] = self._build(item_id)
        return self._frames[item_id]

    def _build(self, item_id) -> ItemFrames:
        item, tl, labels = self.items[item_id], self.timeline, self.labels[item_id]
        fps = item.extra.get("fps")
        if not fps or fps <= 0:
            raise ValueError("no frame rate (extra['fps']): frames cannot be put on the timeline")
        n_steps = timeline_steps(len(labels), fps, tl.step_s)
        streams, anchor = {}, None
        for name, inp in self.inputs.items():
            values, times, usable = self._read(item_id, inp, inp.array)
            found = self._found(item_id, inp)
            if found is not None and found.any():
                usable = found
            if name == tl.anchor:
                anchor = self._anchor(item_id, inp, values, usable, found, labels)
            try:
                streams[name] = to_timeline(values, times, n_steps, tl.step_s, usable)
            except ValueError as e:
                raise ValueError(f"{inp.stage} {inp.array}: {e}") from None
        return ItemFrames(labels, float(fps), streams, *anchor)

    def _anchor(self, item_id, inp, values, usable, found, labels):
        """(sampled frames, their values, labelled frames without a face, no
        face at all): the current vectors the windows end on."""
        frames = self._read(item_id, inp, self.timeline.frame_array)[0].reshape(-1)
        if not len(frames):
            raise ValueError(f"{inp.stage}: no sampled frame")
        order = np.argsort(frames[usable], kind="stable")
        no_face = 0
        if found is not None:
            sampled = np.argsort(frames, kind="stable")
            labelled = np.flatnonzero(labels != DROPPED)
            no_face = int((~found[sampled][nearest(frames[sampled], labelled)]).sum())
        return (frames[usable][order], values.reshape(len(values), -1)[usable][order].astype(np.float32),
                no_face, found is not None and not found.any())

    def _found(self, item_id, inp):
        """The stage's detected flags for the item, or None when it has none.
        A stream whose flags are all off keeps every step: what the stage
        stores for "nothing detected" is then all there is to read."""
        if not self.timeline.found_array:
            return None
        try:
            flags = self._read(item_id, inp, self.timeline.found_array)[0]
        except KeyError:
            return None
        return np.asarray(flags, bool).reshape(-1)

    def _read(self, item_id, inp, array):
        """(values, times, all-usable flags) of one array of the item's output."""
        values = self.read(item_id, inp, array)
        return values, self.times(item_id, inp, array), np.ones(len(values), bool)

    def subset(self, ids, train=False) -> "WindowDataset":
        return WindowDataset(self, list(ids), train)

    def item_of(self, example_id) -> str:
        return example_id.rpartition("@")[0]


class WindowDataset(Dataset):
    """Windows as dicts: {"id": "<item>@<frame>", "label", <input>: (steps <= T,
    width) float32 ending at the target's step (the anchor input's last step
    being the current vector)}."""

    def __init__(self, data: FrameData, ids, train=False):
        self.data = data
        self.ids = ids
        every = data.timeline.train_every if train else 1
        self.examples = [(item_id, int(f)) for item_id in ids
                         for f in np.flatnonzero(data.labels[item_id] != DROPPED)[::every]]

    def __len__(self):
        return len(self.examples)

    def targets(self) -> list:
        return [int(self.data.labels[item_id][frame]) for item_id, frame in self.examples]

    def __getitem__(self, i):
        item_id, frame = self.examples[i]
        tl = self.data.timeline
        f = self.data.frames(item_id)
        k = f.step_of(frame, tl.step_s)
        start = max(0, k - tl.steps + 1)
        out = {"id": f"{item_id}@{frame}", "label": int(f.labels[frame])}
        out.update({name: s[start:k + 1] for name, s in f.streams.items()})
        out[tl.anchor] = out[tl.anchor].copy()      # a view of the item's stream until now
        out[tl.anchor][-1] = f.current(frame)
        return apply_speaker_stats(self.data, item_id, out)
