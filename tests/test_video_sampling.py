"""Frame sampling over an item's video span (pipeline/video.py).

The test videos carry their own frame number as a row of black/white
blocks, so every test checks that the frame decoded is the frame meant,
not only how many came back.
"""
import math

import numpy as np
import pytest

from pipeline.manifest import Media
from pipeline.stage import ConfigError, ItemError
from pipeline.video import (Sampling, VideoSpan, crop_region, prefix, region_slots,
                            regions_for)
from pipeline.windows import time_windows

BITS = 10
W, H = 16 * BITS, 48


def write_numbered(path, n_frames, fps, fourcc="MJPG"):
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened()
    for i in range(n_frames):
        frame = np.zeros((H, W, 3), np.uint8)
        for b in range(BITS):
            if i >> b & 1:
                frame[:, 16 * b:16 * (b + 1)] = 255
        writer.write(frame)
    writer.release()
    return str(path)


def frame_number(frame):
    means = frame.reshape(H, BITS, 16, 3).mean(axis=(0, 2, 3))
    return int(sum(1 << b for b in range(BITS) if means[b] > 128))


def read(path, start=None, end=None, **sampling):
    span = VideoSpan(Media(path, start, end), Sampling(**sampling))
    decoded = [frame_number(f) for _, f in span]
    return span, decoded


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return {"mjpg25": write_numbered(d / "a.avi", 50, 25.0),
            "divx_ntsc": write_numbered(d / "b.avi", 120, 30000 / 1001, "DX50"),
            "mjpg10": write_numbered(d / "c.avi", 40, 10.0)}


def test_whole_file_every_frame_and_every_kth(videos):
    span, decoded = read(videos["mjpg25"], every=1)
    assert decoded == list(range(50))
    assert span.frames == list(range(50))
    assert np.allclose(span.times, np.arange(50) / 25.0)
    meta = span.meta()
    assert meta["fps"] == pytest.approx(25.0) and meta["frames_in_file"] == 50
    assert (meta["frame_width"], meta["frame_height"]) == (W, H)
    assert not meta["truncated"] and meta["missing_frames"] == 0 and meta["sampled_frames"] == 50

    span, decoded = read(videos["mjpg25"], every=5)
    assert decoded == list(range(0, 50, 5))
    assert np.allclose(span.times, np.arange(0, 50, 5) / 25.0)


@pytest.mark.parametrize("name", ["mjpg25", "divx_ntsc"])
def test_span_mid_file_seeks_to_the_right_frame(videos, name):
    # DivX has inter frames, so this also checks the one seek lands exactly.
    fps = 25.0 if name == "mjpg25" else 30000 / 1001
    start, end = 0.5, 1.3
    first, stop = math.ceil(start * fps), math.ceil(end * fps)
    span, decoded = read(videos[name], start, end, every=4)
    assert decoded == list(range(first, stop, 4))
    fps = span.info.fps       # the container's rate (an AVI may store 29.97 for 30000/1001)
    assert np.allclose(span.times, np.arange(first, stop, 4) / fps - start)
    assert span.times[0] >= 0
    assert span.meta()["first_frame"] == first and not span.meta()["truncated"]


def test_span_past_the_end_is_truncated_with_count(videos):
    span, decoded = read(videos["mjpg25"], 1.5, 3.0, every=1)   # file: 50 frames = 2 s
    assert decoded == list(range(38, 50))
    meta = span.meta()
    assert meta["truncated"] is True
    assert meta["missing_frames"] == 75 - 50
    assert meta["missing_samples"] == 75 - 50 and meta["sampled_frames"] == 12


def test_span_starting_past_the_end_is_an_item_error(videos):
    with pytest.raises(ItemError, match="past the end"):
        VideoSpan(Media(videos["mjpg25"], 2.5, 4.0), Sampling(every=1))


def test_rate_sampling_uses_the_window_rule_at_another_fps(videos):
    # 10 fps, span 0.35-3.15 s: steps at the centres of 1 s windows with a 0.5 s hop.
    start, end = 0.35, 3.15
    span, decoded = read(videos["mjpg10"], start, end, rate_hz=2.0, window_s=1.0)
    centres = time_windows(end - start, 1.0, 0.5)
    assert np.allclose(span.times, centres)
    assert decoded == [math.floor((start + c) * 10.0 + 1e-6) for c in centres]
    assert span.meta()["fps"] == pytest.approx(10.0)


def test_rate_sampling_on_ntsc_shows_the_frame_on_screen(videos):
    span, decoded = read(videos["divx_ntsc"], 1.0, 3.5, rate_hz=2.0)
    fps = span.info.fps
    for t, i in zip(span.times, decoded):
        assert i / fps <= 1.0 + t < (i + 1) / fps     # the frame shown at the step's time


def test_short_span_gets_one_window_inside_the_span(videos):
    span, decoded = read(videos["mjpg25"], 0.2, 0.4, rate_hz=2.0, window_s=1.0)
    assert span.times == [0.5]                        # the window rule's single padded window
    assert decoded == [math.ceil(0.4 * 25) - 1]       # shows the span's last frame


def test_missing_and_undecodable_videos_are_item_errors(tmp_path):
    with pytest.raises(ItemError, match="not found"):
        VideoSpan(Media(str(tmp_path / "nope.avi")), Sampling())
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(ItemError, match="cannot decode video"):
        VideoSpan(Media(str(junk)), Sampling())
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(ItemError, match="empty"):
        VideoSpan(Media(str(empty)), Sampling())
    with pytest.raises(ItemError, match="no video"):
        VideoSpan(None, Sampling())


def test_bad_sampling_options():
    with pytest.raises(ConfigError, match="every"):
        Sampling(every=0).check("face")
    with pytest.raises(ConfigError, match="rate_hz"):
        Sampling(rate_hz=-2.0).check("pose")


def test_regions():
    frame = np.arange(4 * 6).reshape(4, 6)
    left, x0 = crop_region(frame, "left")
    right, x1 = crop_region(frame, "right")
    assert left.shape == (4, 3) and x0 == 0 and x1 == 3
    assert np.array_equal(np.hstack([left, right]), frame)
    assert regions_for("halves", Media("v.avi")) == ("left", "right")
    assert regions_for("halves", Media("v.avi", region="right")) == ("right",)
    assert regions_for("whole", Media("v.avi")) == ("whole",)
    assert region_slots("halves", {"right": 1}) == {"left": None, "right": 1}
    assert region_slots("whole", {"left": 1}) == {"whole": 1}
    assert prefix("halves", "left") == "left_" and prefix("whole", "whole") == ""
    with pytest.raises(ItemError, match="region"):
        regions_for("halves", Media("v.avi", region="middle"))


def test_file_shorter_than_its_header_is_cut_where_decoding_stops(tmp_path):
    # A copy cut in half keeps the header's frame count (120) but not the frames.
    whole = write_numbered(tmp_path / "whole.avi", 120, 25.0)
    data = open(whole, "rb").read()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) // 2])
    span, decoded = read(str(cut), 1.0, 4.0, every=2)
    meta = span.meta()
    assert meta["truncated"] and 25 < meta["frames_in_file"] < 120
    assert decoded == list(range(25, meta["frames_in_file"], 2))[:len(decoded)] and decoded
    assert meta["missing_frames"] == 100 - meta["frames_in_file"]
    with pytest.raises(ItemError, match="past the last frame that decodes"):
        read(str(cut), 4.0, 4.5, every=1)


def test_inexact_seek_falls_back_to_stepping_from_the_start(videos, monkeypatch):
    import pipeline.video as video

    class NoSeek:
        """A capture whose container cannot seek: set() leaves it at frame 0."""
        def __init__(self, cap):
            self.cap = cap

        def set(self, prop, value):
            return True

        def __getattr__(self, name):
            return getattr(self.cap, name)

    real = video.open_capture

    def no_seek_capture(path, threads=1):
        cap, info = real(path, threads)
        return NoSeek(cap), info

    monkeypatch.setattr(video, "open_capture", no_seek_capture)
    span, decoded = read(videos["divx_ntsc"], 1.0, 2.0, every=3)
    first = math.ceil(1.0 * span.info.fps - 1e-6)
    assert decoded == list(range(first, math.ceil(2.0 * span.info.fps - 1e-6), 3))
