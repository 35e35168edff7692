"""Benchmark: the demo corpus on 1 vs 2 local workers vs a 2-worker loopback
Dask cluster (separate `dask scheduler` / `dask worker` processes), the
per-task overhead, and the scheduler's memory.

    .venv/bin/python bench/bench_cluster.py [--work build/bench]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_audio import _audio_seconds, _corpus, _timed_cli  # noqa: E402
from tests.cluster import loopback_cluster  # noqa: E402

STAGES = "fbank,mfcc"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="build/bench")
    args = ap.parse_args()
    work = Path(args.work)
    root = _corpus(work / "demo", size="full", video=True)
    from pipeline.corpora import read_corpus
    items = read_corpus("iemocap", root)
    audio = _audio_seconds(items)
    print(f"demo corpus: {len(items)} items, {audio:.0f} s of audio; stages {STAGES}")
    base = ["extract", "--dataset", "iemocap", "--root", str(root), "--stages", STAGES, "--quiet"]
    for label, extra in (("local, 1 worker", ["--workers", "1"]), ("local, 2 workers", ["--workers", "2"])):
        cache = _fresh(work / "cache-cluster")
        wall, _ = _timed_cli(base + ["--cache", str(cache)] + extra)
        print(f"{label:<28} {wall:6.1f} s   {audio / wall:7.0f}x real time")
    with loopback_cluster(work / "loopback") as (address, procs):
        cache = _fresh(work / "cache-cluster")
        wall, _ = _timed_cli(base + ["--cache", str(cache), "--scheduler", address])
        print(f"{'loopback cluster, 2 workers':<28} {wall:6.1f} s   {audio / wall:7.0f}x real time")
        _task_overhead(base, work, address, len(items))
        import psutil
        rss = psutil.Process(procs["scheduler"].pid)
        rss = sum(p.memory_info().rss for p in [rss] + rss.children(recursive=True))
        print(f"scheduler process memory after the runs: {rss / 2**20:.0f} MiB")


def _task_overhead(base, work, address, n_items):
    """Same work in tasks of 1 item vs 64 items: the difference per extra task."""
    walls = {}
    for batch in (1, 64):
        cache = _fresh(work / "cache-cluster")
        walls[batch], _ = _timed_cli(base + ["--cache", str(cache), "--scheduler", address, "--batch", str(batch)])
    tasks = {b: -(-n_items // b) for b in walls}
    per_task = (walls[1] - walls[64]) / (tasks[1] - tasks[64])
    print(f"task overhead: {per_task * 1000:.1f} ms per task "
          f"({tasks[1]} tasks: {walls[1]:.1f} s, {tasks[64]} tasks: {walls[64]:.1f} s)")


def _fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    return path


if __name__ == "__main__":
    main()
