"""Sampling frames of an item's video span, shared by the vision stages.

An item's video is a `Media` (path, start, end, region): IEMOCAP utterances
are spans of a dialog video. Frame `i` of a file is shown from `i / fps`;
the span holds the frames whose timestamp lies in [start, end). Times of
sampled frames are seconds of the item's time (0 = the span's start).

Two ways to sample:

- every k-th frame of the span (`every=k`), step time = the frame's time;
- a rate in Hz (`rate_hz`): one step per window of the shared window rule
  (pipeline/windows.py, window `window_s`, hop 1 / rate), at the window's
  centre, showing the frame on screen at that instant. A 2 Hz vision
  timeline thereby lines up step for step with audio features computed on
  the same windows (e.g. 1 s windows, 0.5 s hop).

Decoding streams: the capture seeks once (CAP_PROP_POS_FRAMES) to the span's
first sampled frame, then reads forward, `grab()`bing frames that are not
sampled, so one frame at a time is in memory. A span that runs past the end
of the file is cut there and says so in its meta (`truncated`,
`missing_frames`); a span that starts past the end, a missing file or one
OpenCV cannot decode is an ItemError.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of the item's span the vision stages look at."""
    every: int = 5                      # every k-th frame of the span ...
    rate_hz: Optional[float] = None     # ... or this rate, at the window rule's centres
    window_s: float = 1.0               # window length for rate_hz (hop 1 / rate_hz)

from .media import lacks_stream, require_media_file
from .stage import ConfigError, ItemError
from .windows import time_windows

# Frame times are compared on this tolerance so that a span boundary given in
# rounded seconds (6.2901) does not lose or gain a frame to float error.
_EPS = 1e-6


@dataclass(frozen=True)
class Sampling:
    """Which frames of a span to take: every k-th, or `rate_hz` window centres."""
    every: int = 5
    rate_hz: float | None = None    # set: sample at window centres instead of every k-th frame
    window_s: float = 1.0           # window length of the rate rule (hop is 1 / rate_hz)

    def check(self, who=""):
        who = f"{who}: " if who else ""
        if self.rate_hz is None and self.every < 1:
            raise ConfigError(f"{who}every={self.every}: must be >= 1")
        if self.rate_hz is not None and not self.rate_hz > 0:
            raise ConfigError(f"{who}rate_hz={self.rate_hz}: must be positive")
        if self.rate_hz is not None and not self.window_s > 0:
            raise ConfigError(f"{who}window_s={self.window_s}: must be positive")


def sampling_of(cfg) -> Sampling:
    """The Sampling described by a stage config with fields every/rate_hz/window_s."""
    return Sampling(cfg.every, cfg.rate_hz, cfg.window_s)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    n_frames: int
    width: int
    height: int


@dataclass(frozen=True)
class Plan:
    """The frames to read for one item, with their step times."""
    frames: tuple           # absolute frame indices, non-decreasing
    times: tuple            # seconds of item time, one per frame
    first: int              # first frame of the span
    stop: int               # end of the span (exclusive), may lie past the end of the file
    dropped: int            # planned steps past the end of the file


def open_capture(path, threads=1):
    """An opened cv2.VideoCapture and its VideoInfo; ItemError when the file is
    missing or OpenCV cannot decode it."""
    import cv2
    require_media_file(path, "video")
    if os.path.getsize(path) == 0:
        raise ItemError(f"video file is empty (0 bytes): {path}")
    params = [cv2.CAP_PROP_N_THREADS, int(threads)] if threads else []
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        if lacks_stream(path, "v"):
            raise ItemError(f"no video track in {path}")
        raise ItemError(f"cannot decode video (OpenCV/FFmpeg could not open it): {path}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if not (fps > 0 and math.isfinite(fps)) or n <= 0 or width <= 0 or height <= 0:
        cap.release()
        raise ItemError(f"cannot decode video (no frame rate, frame count or size: fps={fps}, "
                        f"frames={n}, {width}x{height}): {path}")
    return cap, VideoInfo(str(path), fps, n, width, height)


def plan_span(info: VideoInfo, media, sampling: Sampling) -> Plan:
    """Frame indices and item times to sample from `media`'s span of the video."""
    start = media.start or 0.0
    first = max(0, math.ceil(start * info.fps - _EPS))
    stop = info.n_frames if media.end is None else math.ceil(media.end * info.fps - _EPS)
    if first >= info.n_frames:
        raise ItemError(f"video span starts at {start}s, past the end of {info.path} "
                        f"({info.n_frames} frames, {info.n_frames / info.fps:.3f}s)")
    if stop <= first:
        raise ItemError(f"video span {start}s-{media.end}s holds no frame of {info.path}")
    if sampling.rate_hz is None:
        frames = list(range(first, stop, sampling.every))
        times = [i / info.fps - start for i in frames]
    else:
        end = info.n_frames / info.fps if media.end is None else media.end
        duration = end - start
        times = time_windows(duration, sampling.window_s, 1.0 / sampling.rate_hz)
        # The frame on screen at each centre; a centre past the span's end (the
        # window rule's single padded window) shows the span's last frame.
        frames = [min(max(math.floor((start + t) * info.fps + _EPS), first), stop - 1) for t in times]
    kept = sum(1 for i in frames if i < info.n_frames)
    if not kept:
        raise ItemError(f"video span {start}s-{media.end}s: its first sampled step lies past the "
                        f"end of {info.path} ({info.n_frames} frames)")
    return Plan(tuple(frames[:kept]), tuple(times[:kept]), first, stop, len(frames) - kept)


class VideoSpan:
    """The sampled frames of one item's video span, decoded on demand.

    Iterate to get (step time, BGR frame) one at a time; afterwards `times`
    and `frames` hold what was actually read (a file whose frame count
    header overstates its length is cut where decoding stops) and `meta()`
    the facts to store with the item.
    """

    def __init__(self, media, sampling: Sampling, threads=1):
        if media is None:
            raise ItemError("item has no video")
        self.media, self.threads = media, threads
        self.cap, self.info = open_capture(media.path, threads)
        try:
            self.plan = plan_span(self.info, media, sampling)
        except ItemError:
            self.close()
            raise
        self.times, self.frames = [], []
        self._ended_at = None       # frame index where decoding stopped early

    def __iter__(self):
        try:
            yield from self._read()
        finally:
            self.close()

    def _read(self):
        plan = self.plan
        pos, frame = self._seek(plan.frames[0]), None   # pos: index of the next frame the capture returns
        cap = self.cap                                   # (the seek may have reopened it)
        for index, t in zip(plan.frames, plan.times):
            if index >= pos:                     # otherwise a repeat of the frame just read
                for _ in range(index - pos):     # skipped frames: demux+decode, no conversion
                    if not cap.grab():
                        return self._stopped(pos)
                    pos += 1
                ok, frame = cap.read()
                if not ok:
                    return self._stopped(index)
                pos = index + 1
            self.times.append(t)
            self.frames.append(index)
            yield t, frame

    def _seek(self, target) -> int:
        """Seek once; where the container cannot land exactly (no index, odd
        timestamps), start over and step forward from the first frame."""
        import cv2
        if target == 0:
            return 0
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, target)
        if int(self.cap.get(cv2.CAP_PROP_POS_FRAMES)) == target:
            return target
        self.cap.release()
        self.cap, _ = open_capture(self.media.path, self.threads)
        return 0

    def _stopped(self, index):
        """Decoding ended before the header's frame count: the file is shorter."""
        import cv2
        # After a failed read the capture's position is the number of frames it could decode.
        self._ended_at = min(index, int(self.cap.get(cv2.CAP_PROP_POS_FRAMES)))
        if not self.frames:
            raise ItemError(f"video span starts at frame {self.plan.first}, past the last frame "
                            f"that decodes ({self._ended_at}) of {self.info.path} "
                            f"(its header says {self.info.n_frames} frames)")

    def close(self):
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    @property
    def end_frame(self) -> int:
        """The frame count decoding found (the header's, unless it stopped early)."""
        return self.info.n_frames if self._ended_at is None else min(self._ended_at, self.info.n_frames)

    def meta(self) -> dict:
        """fps, frame_width/height, frames_in_file (as decoded), first_frame of
        the span, sampled_frames, truncated (the span runs past the end),
        missing_frames (frames of the span past the end), missing_samples."""
        info, plan = self.info, self.plan
        missing = max(0, plan.stop - self.end_frame)
        planned = len(plan.frames) + plan.dropped
        return {"fps": info.fps, "frame_width": info.width, "frame_height": info.height,
                "frames_in_file": self.end_frame, "first_frame": plan.first,
                "sampled_frames": len(self.frames), "truncated": missing > 0,
                "missing_frames": missing, "missing_samples": planned - len(self.frames)}


# --- regions: where in the picture to look -------------------------------------

REGION_SETS = {"whole": ("whole",), "halves": ("left", "right")}


def crop_region(frame, region):
    """(view of the frame, x offset in pixels) for a region name."""
    w = frame.shape[1]
    if region == "left":
        return frame[:, : w // 2], 0
    if region == "right":
        return frame[:, w // 2:], w // 2
    if region == "whole":
        return frame, 0
    raise ItemError(f"unknown video region {region!r} (known: left, right)")


def regions_for(search, media) -> tuple:
    """The regions searched for an item: the item's own region when its reader
    set one (e.g. Aff-Wild2 `_left`), otherwise all regions of `search`."""
    if media is not None and media.region:
        if media.region not in ("left", "right"):
            raise ItemError(f"unknown video region {media.region!r} (known: left, right)")
        return (media.region,)
    return REGION_SETS[search]


def region_slots(search, searched: dict) -> dict:
    """Stored region -> what was searched for it (None: not searched for this
    item, whose own region is the other half). A whole-frame search stores
    its one result, whichever part of the picture it looked at."""
    if search == "whole":
        return {"whole": next(iter(searched.values()))}
    return {region: searched.get(region) for region in REGION_SETS[search]}


def prefix(search, region) -> str:
    """Array-name prefix of a region: none for a whole-frame search, else `left_`/`right_`."""
    return "" if search == "whole" else f"{region}_"
