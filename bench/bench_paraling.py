"""Benchmark: the opensmile stage through `pipeline extract` vs the opensmile
package called directly on the same files, and deepspectrum windows/s.

    .venv/bin/python bench/bench_paraling.py [--per-speaker 20] [--work build/bench] [--repeat 2]

Prints figures; passes or fails nothing. Real-time factor (RTF) = seconds of
audio processed per second of wall time (higher is faster). Overhead % =
pipeline wall time / direct wall time - 1, both in one process on one core:

- direct: one Smile object, `process_file` per utterance, values kept in memory;
- pipeline: `pipeline extract --scheduler sync` in this process (reading the
  corpus, keys, planning, audio loading, openSMILE, HDF5 shards, index), and
  the `seconds` the stage itself spent (audio loading + openSMILE);
- also the whole command with a 1-worker Dask cluster, start-up included.

Each timing is the best of --repeat runs (the machine may be shared).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {   # name -> (opensmile stage options, feature set, level)
    "eGeMAPSv02 functionals": ({"feature_set": "eGeMAPSv02", "level": "functionals"}, "eGeMAPSv02", "Functionals"),
    "ComParE_2016 functionals": ({"feature_set": "ComParE_2016", "level": "functionals"}, "ComParE_2016",
                                 "Functionals"),
    "ComParE_2016 LLDs": ({"feature_set": "ComParE_2016", "level": "lld"}, "ComParE_2016", "LowLevelDescriptors"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-speaker", type=int, default=20, help="demo utterances per speaker (10 speakers)")
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ds-items", type=int, default=40, help="items for the deepspectrum figure")
    ap.add_argument("--skip-dask", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    root = _corpus(work / f"paraling-demo-{args.per_speaker}", args.per_speaker)
    from pipeline.corpora import read_corpus
    items = read_corpus("iemocap", root)
    audio_s = _audio_seconds(items)
    print(f"corpus: {len(items)} IEMOCAP-layout demo utterances, {audio_s:.0f} s of audio, "
          f"cpus={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    for title, (opts, fs, level) in CONFIGS.items():
        _bench_opensmile(title, opts, fs, level, items, root, work, audio_s, args)
    _bench_deepspectrum(items[:args.ds_items], root, work)


def _corpus(out, per_speaker):
    root = out / "IEMOCAP_full_release"
    if not root.exists():
        from pipeline.demo import make_demo
        t0 = time.perf_counter()
        make_demo("iemocap", root, seed=0, size="full", utterances_per_speaker=per_speaker, video=False)
        print(f"generated {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def _audio_seconds(items):
    import soundfile as sf
    return sum(sf.info(it.audio.path).duration for it in items)


def _direct(items, fs, level):
    """What a researcher would write with the opensmile package."""
    import opensmile
    smile = opensmile.Smile(opensmile.FeatureSet[fs], opensmile.FeatureLevel[level])
    t0, c0 = time.perf_counter(), time.process_time()
    out = [smile.process_file(it.audio.path, start=it.audio.start, end=it.audio.end).to_numpy()
           for it in items]
    return (time.perf_counter() - t0, time.process_time() - c0), out


def _sets(opts):
    return [a for k, v in opts.items() for a in ("--set", f"opensmile.{k}={v}")]


def _pipeline_sync(root, cache, stage, sets, dataset="iemocap"):
    """(wall, CPU) seconds of an in-process `pipeline extract --scheduler sync`, and the stage's own seconds."""
    from pipeline.cli import main as cli
    shutil.rmtree(cache, ignore_errors=True)
    buf = io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(buf):
        rc = cli(["extract", "--dataset", dataset, "--root", str(root), "--cache", str(cache),
                  "--stages", stage, *sets, "--scheduler", "sync", "--quiet"])
    wall = (time.perf_counter() - t0, time.process_time() - c0)
    if rc:
        raise SystemExit(buf.getvalue())
    row = next(line.split() for line in buf.getvalue().splitlines() if line.startswith(stage + " "))
    return wall, float(row[5]), int(row[1]), buf.getvalue()


def _noop(root, cache, stage, sets):
    from pipeline.cli import main as cli
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        cli(["extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(cache),
             "--stages", stage, *sets, "--scheduler", "sync", "--quiet"])
    return time.perf_counter() - t0


def _bench_opensmile(title, opts, fs, level, items, root, work, audio_s, args):
    import numpy as np
    from pipeline.api import Cache
    sets = _sets(opts)
    cache = work / "cache-paraling-sync"
    inf = (float("inf"), float("inf"))
    best_d, best_p, best_s = inf, inf, float("inf")
    _direct(items[:2], fs, level)                        # warm imports and file cache for both
    for _ in range(args.repeat):
        t_d, direct = _direct(items, fs, level)
        t_p, t_s, computed, _out = _pipeline_sync(root, cache, "opensmile", sets)
        best_d = tuple(map(min, best_d, t_d))
        best_p = tuple(map(min, best_p, t_p))
        best_s = min(best_s, t_s)
    got = Cache(cache).load("opensmile", [it.id for it in items], overrides={"opensmile": opts})
    name = "functionals" if opts["level"] == "functionals" else opts["level"]
    worst = max(float(np.max(np.abs(np.atleast_2d(got[it.id].arrays[name]) - d))) for it, d in zip(items, direct))
    print(f"\n== opensmile {title} ({computed} items)")
    for what, i in (("wall", 0), ("CPU", 1)):
        print(f"direct opensmile (process_file), {what:>4}: {best_d[i]:7.2f} s  RTF {audio_s / best_d[i]:7.1f}x")
        print(f"pipeline sync, whole command,    {what:>4}: {best_p[i]:7.2f} s  RTF {audio_s / best_p[i]:7.1f}x"
              f"  overhead {100 * (best_p[i] / best_d[i] - 1):+6.1f} %")
    print(f"pipeline, the stage's own seconds (wall): {best_s:7.2f} s  RTF {audio_s / best_s:7.1f}x  "
          f"vs direct wall {100 * (best_s / best_d[0] - 1):+6.1f} %")
    print(f"max |pipeline - direct| over all values: {worst:.3g}")
    print(f"no-op rerun (in process): {_noop(root, cache, 'opensmile', sets):.2f} s")
    if not args.skip_dask:
        dask_cache = work / "cache-paraling-dask"
        shutil.rmtree(dask_cache, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("pipeline")), "extract", "--dataset", "iemocap",
                        "--root", str(root), "--cache", str(dask_cache), "--stages", "opensmile", *sets,
                        "--workers", "1", "--quiet"], check=True, capture_output=True)
        t = time.perf_counter() - t0
        print(f"pipeline, 1 Dask worker, whole command incl. start-up: {t:6.2f} s  RTF {audio_s / t:7.1f}x  "
              f"overhead {100 * (t / best_d[0] - 1):+6.1f} %", flush=True)


def _bench_deepspectrum(items, root, work):
    """deepspectrum windows/s on this machine's device (random DenseNet-121 weights)."""
    import torch
    from pipeline.cnn import pick_device
    from pipeline.context import ItemContext
    from pipeline.stage import make_config
    from pipeline.stages.deepspectrum import DeepSpectrum, spectrogram_images
    from pipeline.windows import cut_windows
    opts = {"weights": "random", "seed": 0}
    # Whole command on a table of the first items (model set-up included).
    table = work / "ds-items.csv"
    table.write_text("\n".join(["id,audio"] + [f"{it.id},{it.audio.path}" for it in items]) + "\n")
    sets = [a for k, v in opts.items() for a in ("--set", f"deepspectrum.{k}={v}")]
    wall = _pipeline_sync(table, work / "cache-paraling-ds", "deepspectrum", sets, dataset="table")[0][0]
    # Steady state: one stage instance, model already built, as in a long run.
    stage = DeepSpectrum(make_config(DeepSpectrum, opts))
    t0 = time.perf_counter()
    res = stage.resources
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = stage.compute_batch([ItemContext(it, {}) for it in items])
    steady = time.perf_counter() - t0
    windows = sum(r.meta["windows"] for r in results)
    t0 = time.perf_counter()
    for ctx in (ItemContext(it, {}) for it in items):
        wins = cut_windows(ctx.audio(16000), 16000, 1.0, 0.5)[0]
        spectrogram_images(wins, stage.config, res["cmap"])
    render = time.perf_counter() - t0
    print(f"\n== deepspectrum: DenseNet-121 (random weights), 224x224 viridis images of 1 s / 0.5 s windows, "
          f"device {pick_device()}, torch threads {torch.get_num_threads()}, batch {stage.config.batch_size}")
    print(f"{len(items)} items, {windows} windows")
    print(f"whole command (sync; torch import, model set-up included):{wall:6.1f} s  {windows / wall:6.1f} windows/s")
    print(f"steady state (model built in {setup:.1f} s):                   {steady:6.1f} s  {windows / steady:6.1f} windows/s")
    print(f"spectrogram images alone: {windows / render:.0f} windows/s "
          f"({100 * render / steady:.0f} % of the steady-state time; the rest is the CNN)")


if __name__ == "__main__":
    main()
