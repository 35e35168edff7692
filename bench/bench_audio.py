"""Benchmark: fbank + mfcc (+ deltas) through `pipeline extract` vs librosa
called directly per file, 1 vs 2 workers, the no-op rerun, and peak memory.

    .venv/bin/python bench/bench_audio.py [--items 10000] [--work build/bench]

Prints figures; passes or fails nothing. Real-time factor = seconds of audio
processed per second of wall time.
"""
from __future__ import annotations

import os

# One core for the direct baseline too, as each pipeline worker has: BLAS
# threads would otherwise compete with each other (and the workers).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

STAGES = "fbank,mfcc"
FBANK = dict(n_mels=80, win=400, hop=160, n_fft=512)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10000, help="size of the fabricated corpus")
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    demo = _corpus(work / "demo", size="full", video=True)
    _bench_corpus("demo corpus (full)", demo, work)
    if not args.skip_big:
        per_speaker = max(1, args.items // 10)
        big = _corpus(work / f"fab{args.items}", size="full", video=False, dialog_audio=False,
                      utterances_per_speaker=per_speaker)
        _bench_corpus(f"fabricated corpus ({args.items} items)", big, work, direct_sample=1000)


def _corpus(out, **opts):
    root = out / "IEMOCAP_full_release"
    if not root.exists():
        t0 = time.perf_counter()
        from pipeline.demo import make_demo
        make_demo("iemocap", root, seed=0, **opts)
        print(f"generated {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def _bench_corpus(title, root, work, direct_sample=None):
    from pipeline.corpora import read_corpus
    items = read_corpus("iemocap", root)
    audio_s = _audio_seconds(items)
    print(f"\n== {title}: {len(items)} items, {audio_s / 3600:.2f} h of audio")
    sample = items if direct_sample is None else items[:: max(1, len(items) // direct_sample)]
    t_direct = _direct_librosa(sample)
    rtf_direct = _audio_seconds(sample) / t_direct
    print(f"librosa direct, 1 process, per file ({len(sample)} files): {rtf_direct:8.0f}x real time")
    results = {}
    for workers in (1, 2):
        cache = work / f"cache-{root.parent.name}-{workers}"
        shutil.rmtree(cache, ignore_errors=True)
        wall, peak = _timed_cli(["extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(cache),
                                 "--stages", STAGES, "--workers", str(workers), "--quiet"])
        results[workers] = wall
        print(f"pipeline, {workers} worker(s), start-up included: {wall:7.1f} s  "
              f"{audio_s / wall:8.0f}x real time  ({audio_s / wall / workers:6.0f}x per core), "
              f"peak RSS of the process tree {peak / 2**20:6.0f} MiB")
    print(f"speed-up 1 -> 2 workers: {results[1] / results[2]:.2f}x")
    print(f"pipeline (1 worker) vs librosa direct: {audio_s / results[1] / rtf_direct:.2f}x")
    noop, peak = _timed_cli(["extract", "--cache", str(work / f"cache-{root.parent.name}-2"), "--stages", STAGES,
                             "--quiet"])
    print(f"no-op rerun (whole command, start-up included): {noop:.2f} s, peak RSS {peak / 2**20:.0f} MiB")


def _audio_seconds(items):
    import soundfile as sf
    return sum(sf.info(it.audio.path).duration for it in items if os.path.exists(it.audio.path))


def _direct_librosa(items):
    """What a researcher would write: load, then fbank and mfcc each from the signal."""
    import librosa
    import numpy as np
    _ = librosa.feature.delta(np.zeros((2, 20), np.float32))   # numba compiles once, untimed
    t0 = time.perf_counter()
    for it in items:
        y, sr = librosa.load(it.audio.path, sr=16000)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=160, win_length=400,
                                             window="hamming", n_mels=80)
        fb = np.log(np.maximum(mel, 1e-10))
        mf = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13, n_fft=512, hop_length=160, win_length=400,
                                  window="hamming", n_mels=40)
        mf = np.concatenate([mf, librosa.feature.delta(mf), librosa.feature.delta(mf, order=2)])
        _ = fb.T.astype(np.float32), mf.T.astype(np.float32)
    return time.perf_counter() - t0


def _timed_cli(args):
    import psutil
    exe = Path(sys.executable).with_name("pipeline")
    env = dict(os.environ)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe)] + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = sum(c.memory_info().rss for c in [p] + p.children(recursive=True))
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.05)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    if proc.returncode:
        print(out)
        raise SystemExit(f"pipeline {' '.join(args)} failed")
    return wall, peak[0]


if __name__ == "__main__":
    main()
