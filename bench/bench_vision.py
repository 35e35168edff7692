"""Vision stages benchmark: sampled frames per second on the demo corpus videos.

    python bench/bench_vision.py                       # makes a small demo corpus in a temp folder
    python bench/bench_vision.py --root DEMO/IEMOCAP_full_release --cnn-items 4 --json out.json

Measured, over the utterance spans of the demo IEMOCAP dialog AVIs (720x480,
DivX, 29.97 fps):

1. decode alone: pipeline.video.VideoSpan at 1 frame in 5 (sampled frames/s),
   and every frame (decoded frames/s);
2. face (1 in 5, both halves searched), pose (2 Hz) and frames (ResNet-18
   GAP, random weights) through the stages' own compute(), in one process
   pinned to one core (`--cores` to change), models loaded beforehand;
3. the same face and pose work done by calling OpenCV and MediaPipe directly
   on the same frames, nothing else: the pipeline's overhead is the ratio;
4. `pipeline extract --stages face` on the whole corpus with 1 and 2 Dask
   workers (wall time, start-up included).

Figures depend on the machine and on what else runs on it: the load average
is printed alongside.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="IEMOCAP_full_release folder of a demo corpus (default: make one)")
    p.add_argument("--size", default="small", help="demo corpus size when making one")
    p.add_argument("--cores", default="0", help="CPUs the single-process runs are pinned to (e.g. 0 or 0,1)")
    p.add_argument("--cnn-items", type=int, default=4, help="items for the CNN embedding run (it is slow on CPU)")
    p.add_argument("--workers", default="1,2", help="worker counts for the extract runs")
    p.add_argument("--repeat", type=int, default=3, help="runs per single-process figure (best is kept)")
    p.add_argument("--items", type=int, help="use only the first N items (default: all)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_vision_") as tmp:
        root = Path(args.root) if args.root else make_corpus(Path(tmp), args.size)
        items = read_items(root)[:args.items]
        out = {"items": len(items), "load_average_before": os.getloadavg(), "cpus": os.cpu_count()}
        cores = {int(c) for c in args.cores.split(",")}
        out["single_process"] = single_process(items, cores, args.cnn_items, args.repeat)
        out["extract_face"] = {n: extract_run(root, Path(tmp) / f"cache{n}", n, items)
                               for n in (int(w) for w in args.workers.split(","))}
        out["load_average_after"] = os.getloadavg()
    report(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


def make_corpus(tmp, size):
    from pipeline.demo import make_demo
    root = tmp / "IEMOCAP_full_release"
    make_demo("iemocap", root, size=size)
    return root


def read_items(root):
    from pipeline.corpora import load_all
    return [it for it in load_all()["iemocap"](root) if it.video is not None]


def single_process(items, cores, cnn_items, repeat):
    """Everything in this process, pinned to `cores`; each figure is the best of
    `repeat` runs (other work on a shared machine only ever slows a run down)."""
    import cv2
    os.sched_setaffinity(0, cores)
    cv2.setNumThreads(len(cores))
    face, pose = stage("face", {}), stage("pose", {})
    frames = stage("frames", {"weights": "random", "seed": 0})
    runs = {
        "decode_1in5": lambda: decode(items, 5),
        "decode_every_frame": lambda: decode(items, 1),
        "face_stage": lambda: run_stage(face, items),
        "face_direct": lambda: direct(items, "face", every=5),
        "pose_stage": lambda: run_stage(pose, items),
        "pose_direct": lambda: direct(items, "pose", rate_hz=2.0),
        "frames_stage_resnet18": lambda: run_stage(frames, items[:cnn_items]),
    }
    for fn in (lambda: run_stage(face, items[:1]), lambda: run_stage(pose, items[:1]),
               lambda: run_stage(frames, items[:1])):
        fn()                                   # warm-up: first inferences are slower
    res = {"cores": sorted(cores), "repeat": repeat}
    pairs = {"face": [], "pose": []}
    for _ in range(repeat):                    # interleaved, so a busy spell hits all alike
        runs_now = {}
        for key, fn in runs.items():
            r = runs_now[key] = timed(fn)
            if key not in res or r["seconds"] < res[key]["seconds"]:
                res[key] = r
        for kind in pairs:
            pairs[kind].append(runs_now[f"{kind}_stage"]["seconds"] / runs_now[f"{kind}_direct"]["seconds"])
    for kind, ratios in pairs.items():
        res[f"{kind}_overhead"] = {"best_over_best": res[f"{kind}_stage"]["seconds"] / res[f"{kind}_direct"]["seconds"],
                                   "median_of_pairs": statistics.median(ratios), "pairs": ratios}
    return res


def stage(name, options):
    """A validated stage with its models loaded (setup is not timed)."""
    from pipeline.stage import make_config
    from pipeline.stages import load_all
    cls = load_all()[name]
    s = cls(make_config(cls, options))
    s.validate()
    s.resources
    return s


def timed(fn):
    """Frames done, wall seconds and CPU seconds of this process (MediaPipe's
    own threads included), and frames per wall second."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": n, "seconds": dt, "cpu_seconds": cpu, "frames_per_s": n / dt if dt else float("nan")}


def decode(items, every):
    from pipeline.video import Sampling, VideoSpan
    n = 0
    for it in items:
        for _ in VideoSpan(it.video, Sampling(every=every)):
            n += 1
    return n


def run_stage(s, items):
    from pipeline.context import ItemContext
    return sum(s.compute(ItemContext(it, {})).meta["sampled_frames"] for it in items)


def direct(items, kind, every=5, rate_hz=None):
    """The same frames through OpenCV and MediaPipe with no pipeline code on the path:
    the frame indices are planned up front, then read and detected in a bare loop."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    from pipeline.landmarks import packaged_model
    from pipeline.video import Sampling, open_capture, plan_span
    plans = []
    for it in items:
        cap, info = open_capture(it.video.path)
        cap.release()
        plans.append((it.video.path, plan_span(info, it.video, Sampling(every=every, rate_hz=rate_hz)).frames))
    if kind == "face":
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=packaged_model("face_landmarker.task")),
            output_face_blendshapes=True)
        task = vision.FaceLandmarker.create_from_options(options)
        halves = True
    else:
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=packaged_model("pose_landmarker_full.task")))
        task = vision.PoseLandmarker.create_from_options(options)
        halves = False
    n = 0
    try:
        for path, frames in plans:
            cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
            cap.set(cv2.CAP_PROP_POS_FRAMES, frames[0])
            pos = frames[0]
            for index in frames:
                while pos < index:
                    cap.grab()
                    pos += 1
                if pos == index:
                    ok, frame = cap.read()
                    pos += 1
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                w = rgb.shape[1]
                crops = (rgb[:, :w // 2], rgb[:, w // 2:]) if halves else (rgb,)
                for crop in crops:
                    task.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop.copy()))
                n += 1
            cap.release()
    finally:
        task.close()
    return n


def extract_run(root, cache, workers, items):
    """Wall time of `pipeline extract --stages face` with `workers` Dask workers."""
    import subprocess
    cmd = [sys.executable, "-m", "pipeline.cli", "extract", "--dataset", "iemocap", "--root", str(root),
           "--cache", str(cache), "--stages", "face", "--workers", str(workers), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    from pipeline.api import Cache
    feats = Cache(cache).load("face")
    n = sum(f.meta["sampled_frames"] for f in feats.values())
    # The summary's seconds column: time spent in the stage, summed over workers.
    row = next(line.split() for line in proc.stdout.splitlines() if line.startswith("face "))
    return {"frames": n, "seconds": dt, "frames_per_s": n / dt, "stage_seconds": float(row[-1])}


def report(out):
    sp = out["single_process"]
    print(f"\nvision benchmark: {out['items']} demo items, {out['cpus']} CPUs, "
          f"load average before {out['load_average_before'][0]:.2f}, after {out['load_average_after'][0]:.2f}")
    print(f"single process pinned to CPU(s) {sp['cores']}, best of {sp['repeat']} runs:")
    rows = [("decode alone, 1 in 5 (sampled)", "decode_1in5"), ("decode alone, every frame", "decode_every_frame"),
            ("decode + face, 1 in 5, halves (stage)", "face_stage"),
            ("decode + face, same frames (direct MediaPipe)", "face_direct"),
            ("decode + pose, 2 Hz (stage)", "pose_stage"), ("decode + pose, same frames (direct)", "pose_direct"),
            ("decode + frames ResNet-18 224px (stage)", "frames_stage_resnet18")]
    for label, key in rows:
        r = sp[key]
        print(f"  {label:<48}{r['frames_per_s']:>9.1f} frames/s  ({r['frames']} frames, {r['seconds']:.2f} s, "
              f"{r['cpu_seconds']:.2f} CPU s)")
    for kind in ("face", "pose"):
        o = sp[f"{kind}_overhead"]
        print(f"  pipeline / direct time, {kind}: best over best {o['best_over_best']:.3f}, median of paired runs "
              f"{o['median_of_pairs']:.3f} (pairs: {', '.join(f'{x:.2f}' for x in o['pairs'])})")
    print("pipeline extract --stages face (whole corpus, Dask start-up included):")
    for n, r in out["extract_face"].items():
        if "error" in r:
            print(f"  {n} worker(s): failed: {r['error']}")
        else:
            print(f"  {n} worker(s): {r['frames_per_s']:.1f} frames/s ({r['frames']} frames, {r['seconds']:.1f} s "
                  f"wall, {r['stage_seconds']:.1f} s in the stage summed over workers)")


if __name__ == "__main__":
    main()
