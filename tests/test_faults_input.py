"""Inputs that cannot crash or hang a run: a directory, a FIFO, non-finite
samples, WAVs of unknown length (ffmpeg to a pipe), a video without audio.
Each bad item fails by name; every other item is computed."""
from __future__ import annotations

import os
import signal
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf

from pipeline.api import Cache
from tests.helpers import espeak_wav, extract, run_cli, summary


def _piped_wav(source, out, size=None):
    """`source` re-encoded by ffmpeg to a pipe: the header's sizes say "unknown"
    (0xFFFFFFFF); with `size`, the data size field is then set to that value."""
    data = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(source), "-f", "wav", "-"],
                          check=True, capture_output=True).stdout
    at = data.find(b"data")
    assert struct.unpack("<I", data[at + 4:at + 8])[0] == 0xFFFFFFFF
    if size is not None:
        data = data[:at + 4] + struct.pack("<I", size) + data[at + 8:]
    out.write_bytes(data)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    espeak_wav(root / "good.wav", "we walked along the river until sunset")
    _piped_wav(root / "good.wav", root / "piped.wav")
    _piped_wav(root / "good.wav", root / "piped0.wav", size=0)
    y, sr = sf.read(root / "good.wav", dtype="float32")
    y[100], y[200], y[300] = np.nan, np.inf, -np.inf
    sf.write(root / "nan.wav", y, sr, subtype="FLOAT")
    (root / "folder.wav").mkdir()
    os.mkfifo(root / "fifo.wav")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=10",
                    str(root / "silent.mp4")], check=True)
    names = ["good", "piped", "piped0", "nan", "folder", "fifo"]
    rows = [f"{n},{n}.wav" for n in names] + ["silent,silent.mp4"]
    (root / "corpus.csv").write_text("id,audio\n" + "\n".join(rows) + "\n")
    return root


EXPECTED = {
    "nan": r"audio has 3 non-finite sample\(s\) \(NaN or inf\): .*nan\.wav",
    "folder": r"audio file is a directory: .*folder\.wav",
    "fifo": r"audio file is a FIFO, not a regular file: .*fifo\.wav",
    "silent": r"no audio track in .*silent\.mp4",
}


def _timeout(signum, frame):
    raise TimeoutError("extract hung (a FIFO was opened?)")


def test_bad_inputs_fail_by_name_and_nothing_hangs(hostile, tmp_path, capsys):
    import re
    cache = tmp_path / "cache"
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(120)
    try:
        assert extract(hostile, cache, "--stages", "fbank") == 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out = capsys.readouterr().out
    row = summary(out)["fbank"]
    assert row["computed"] == 3 and row["failed"] == str(len(EXPECTED))
    for item, pattern in EXPECTED.items():
        assert re.search(rf"fbank: {item}: {pattern}", out), (item, out)

    # the WAVs of unknown length are read to the end of their data: the same features
    feats = Cache(cache).load("fbank", ["good", "piped", "piped0"])
    good = feats["good"].arrays["fbank"]
    assert good.shape[0] > 100
    for item in ("piped", "piped0"):
        np.testing.assert_array_equal(feats[item].arrays["fbank"], good)

    # status neither crashes nor hangs on the same paths, and names each failure
    assert run_cli("status", "--cache", cache, "--stages", "fbank", "--errors") == 0
    out = capsys.readouterr().out
    for item, pattern in EXPECTED.items():
        assert re.search(rf"{item}: {pattern}", out), (item, out)


def test_a_video_without_a_video_track_says_so(tmp_path):
    from pipeline.stage import ItemError
    from pipeline.video import open_capture
    clip = tmp_path / "voice.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "aac", str(clip)], check=True)
    with pytest.raises(ItemError, match=r"no video track in .*voice\.mp4"):
        open_capture(str(clip))
