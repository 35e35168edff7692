"""Throughput and disk cost of the `ssl` stage (a script, not a test: it prints figures).

    .venv/bin/python bench/bench_ssl.py [--root DEMO_IEMOCAP_ROOT] [--threads 1] [--repeat 2]

No SSL model ships and none is downloaded: the model is a RANDOMLY
INITIALISED WavLM-shaped encoder built in a temporary folder, small but not
trivial (7 conv layers of 256 channels, 4 transformer layers of 256 wide,
layer-norm front end so padded batches are exact). Its speed is not
WavLM-Base+'s (12 x 768); the ratio of pipeline to bare loop is the figure
that carries over. On the demo corpus (made in a temporary folder unless
--root is given) it times:

  ssl, pipeline    `pipeline extract --stages ssl --scheduler sync` into a
                   fresh cache: manifest, audio decoding and resampling,
                   batching, all hidden states, HDF5 shards, index; model
                   load included
  ssl, bare loop   the same model over the same items with plain
                   transformers in this process: read and resample each
                   wav, length-sorted batches of the same padded-audio
                   budget, feature extractor, forward with
                   output_hidden_states, states to numpy; model load included

Both on CPU, torch on --threads threads. Items/s = items / wall seconds;
RTF = wall seconds / seconds of audio. Each figure is the best of --repeat.

Then the cache size per hour of audio: the shard bytes of four extractions
(frames of all layers or mean-pooled vectors, float32 or float16) divided by
the corpus's hours, and what that means for a 13-state, 768-wide model
(WavLM-Base+), scaled by states x width.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pipeline.cli import main as cli  # noqa: E402

BENCH_MODEL = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                   conv_dim=(256,) * 7, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16,
                   feat_extract_norm="layer", do_stable_layer_norm=True)
BUDGET_S = 160.0        # padded audio per forward pass, the stage's default batch_seconds


def extract(root, cache, *sets):
    args = ["extract", "--dataset", "iemocap", "--root", str(root), "--cache", str(cache), "--scheduler", "sync",
            "--quiet", "--stages", "ssl"]
    for s in sets:
        args += ["--set", s]
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli(args)
    if rc != 0:
        raise SystemExit(f"extract failed ({rc}): {args}")


def clocks():
    return time.perf_counter(), time.process_time()


def since(t0):
    """(wall seconds, CPU seconds of this process) since `t0 = clocks()`."""
    return tuple(b - a for a, b in zip(t0, clocks()))


def time_pipeline(root, model, threads, work):
    t0 = clocks()
    extract(root, Path(tempfile.mkdtemp(dir=work)) / "cache", f"ssl.model={model}", f"ssl.threads={threads}")
    return since(t0)


def time_bare_loop(paths, model, threads):
    """Plain transformers over the same wavs, length-sorted batches of BUDGET_S padded seconds."""
    import librosa
    import soundfile as sf
    import torch
    from transformers import AutoFeatureExtractor, AutoModel
    torch.set_num_threads(threads)
    t0 = clocks()
    fe = AutoFeatureExtractor.from_pretrained(model)
    net = AutoModel.from_pretrained(model).eval()
    waves = []
    for p in paths:
        y, sr = sf.read(p, dtype="float32", always_2d=True)
        waves.append(librosa.resample(y.mean(1), orig_sr=sr, target_sr=16000, res_type="soxr_hq") if sr != 16000
                     else y.mean(1))
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    states, batch = {}, []
    for i in order + [None]:
        if batch and (i is None or (len(batch) + 1) * len(waves[i]) > BUDGET_S * 16000):
            inputs = fe([waves[j] for j in batch], sampling_rate=16000, padding=True, return_tensors="pt")
            with torch.inference_mode():
                hidden = net(**inputs, output_hidden_states=True).hidden_states
            stacked = torch.stack(hidden, 2).numpy()
            states.update({j: stacked[b] for b, j in enumerate(batch)})
            batch = []
        if i is not None:
            batch.append(i)
    return since(t0), sum(len(w) for w in waves) / 16000


def cache_bytes(cache, sets):
    from pipeline.api import Cache
    from pipeline.graph import resolve
    from pipeline.options import parse_set
    spec = resolve(["ssl"], parse_set(sets))[-1]
    c = Cache(cache)
    return sum((Path(cache) / shard).stat().st_size for shard, config_id, *_ in c.index.shards()
               if config_id == spec.config_id)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", help="a demo IEMOCAP root (default: make one in a temp folder)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--size", default="small", help="demo corpus size when --root is not given (small, full)")
    args = ap.parse_args()
    from pipeline.corpora.iemocap import read_iemocap
    from pipeline.demo import make_demo
    from ssl_models import tiny_encoder
    work = Path(tempfile.mkdtemp(prefix="bench-ssl-"))
    root = Path(args.root) if args.root else work / "IEMOCAP_full_release"
    if not args.root:
        make_demo("iemocap", root, size=args.size, seed=0, video=False)
    model = tiny_encoder(work / "model", "wavlm", **BENCH_MODEL)
    paths = [it.audio.path for it in read_iemocap(root) if it.audio]
    print(f"model: RANDOM WavLM-shaped encoder (not a trained model): {BENCH_MODEL['num_hidden_layers']} layers x "
          f"{BENCH_MODEL['hidden_size']}, conv 7 x 256; CPU, torch threads {args.threads}")
    runs = [time_bare_loop(paths, model, args.threads) for _ in range(args.repeat)]
    audio_s = runs[0][1]
    bare = tuple(min(r[0][k] for r in runs) for k in (0, 1))
    piped = [time_pipeline(root, model, args.threads, work) for _ in range(args.repeat)]
    pipe = tuple(min(r[k] for r in piped) for k in (0, 1))
    print(f"corpus: {len(paths)} items, {audio_s / 60:.1f} min of audio; wall (CPU seconds of this process)")
    for name, (wall, cpu) in (("ssl, pipeline", pipe), ("ssl, bare loop", bare)):
        print(f"  {name:<15} {wall:7.2f} s ({cpu:6.2f})  {len(paths) / wall:6.2f} items/s "
              f"({len(paths) / cpu:6.2f})  RTF {wall / audio_s:.4f} ({cpu / audio_s:.4f})")
    print(f"  pipeline / bare loop: {pipe[0] / bare[0]:.2f}x wall, {pipe[1] / bare[1]:.2f}x CPU")
    sizes(root, model, work, audio_s, len(paths))
    chunking(paths, model)


def chunking(paths, model, seconds=40.0, max_seconds=10.0, overlap=2.0):
    """States of one long item cut into chunks against one pass over it: per
    layer, the largest and the mean |difference|, relative to the mean |state|."""
    import numpy as np
    import soundfile as sf
    from pipeline.stage import make_config
    from pipeline.stages.ssl import SSL
    waves = [sf.read(p, dtype="float32")[0] for p in paths]
    y = np.concatenate(waves * 10)[:int(seconds * 16000)]

    class Ctx:
        def audio(self, sr, resample=True):
            return y
    states = []
    for cut in (max_seconds, 2 * seconds):
        stage = SSL(make_config(SSL, {"model": str(model), "max_seconds": cut, "overlap_seconds": overlap}))
        stage.validate()
        (r,) = stage.compute_batch([Ctx()])
        states.append(r.arrays["frames"].data)
    diff, scale = np.abs(states[0] - states[1]), np.abs(states[1]).mean(axis=(0, 2))
    print(f"chunking a {seconds:.0f} s item into {max_seconds:.0f} s chunks, {overlap:.0f} s overlap, against one "
          "pass (per hidden state; |diff| / mean |state|):")
    print("  max  " + " ".join(f"{v:.4f}" for v in diff.max(axis=(0, 2)) / scale))
    print("  mean " + " ".join(f"{v:.5f}" for v in diff.mean(axis=(0, 2)) / scale))


def sizes(root, model, work, audio_s, n_items):
    """Measured shard bytes per hour, and the payload the same settings
    would have for WavLM-Base+ (13 states x 768) at this corpus's items per hour."""
    cache = work / "sizes"
    hours = audio_s / 3600
    states = BENCH_MODEL["num_hidden_layers"] + 1
    print(f"cache size per hour of audio (shards on disk, {states} states x {BENCH_MODEL['hidden_size']}; "
          f"{n_items / hours:.0f} items/h), and the array payload for WavLM-Base+ (13 x 768):")
    for pool in ("none", "mean"):
        for dtype in ("float32", "float16"):
            sets = [f"ssl.model={model}", f"ssl.pool={pool}", f"ssl.dtype={dtype}"]
            extract(root, cache, *sets)
            per_hour = cache_bytes(cache, sets) / hours
            rows = 50 * 3600 if pool == "none" else n_items / hours
            base = rows * 13 * 768 * (4 if dtype == "float32" else 2)
            what = "frames, all layers" if pool == "none" else "mean-pooled vectors"
            print(f"  {what:<20} {dtype}: {per_hour / 2**20:9.2f} MiB/h   WavLM-Base+: {base / 2**20:9.2f} MiB/h")


if __name__ == "__main__":
    main()
