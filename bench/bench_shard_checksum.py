"""Cost of the shards' Fletcher-32 checksums on write and read (a script: it prints figures).

    .venv/bin/python bench/bench_shard_checksum.py [--items 256] [--repeat 3]

Writes one shard of `--items` fbank@tsin-like items (240 values per 10 ms
frame, 1-15 s, mean 4.5 s) through pipeline.shard, once as shipped
(Fletcher-32, chunks of whole rows of about 64 KiB) and once with the same
chunks but no checksum, then reads every item's rows back in random order
through pipeline.shard.ShardReader. Prints MB/s and items/s for each, and the
checksum's share of the time.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from pipeline import shard  # noqa: E402
from pipeline.stage import Result, Seq  # noqa: E402


def _plain_numbers(g, name, data):
    """pipeline.shard._numbers without the checksum (same chunks)."""
    if not data.size:
        g.create_dataset(name, data=data)
        return
    rows = int(min(len(data), max(1, shard.CHUNK_BYTES // (data.itemsize * max(1, int(data[:1].size))))))
    g.create_dataset(name, data=data, chunks=(rows, *data.shape[1:]))


def run(folder, results, keys, checksum, repeat):
    info = {"stage": "fbank", "label": "fbank@tsin", "version": "1", "config_id": "bench", "config": {}}
    patch = contextlib.nullcontext() if checksum else mock.patch.object(shard, "_numbers", _plain_numbers)
    writes, reads = [], []
    with patch:
        for _ in range(repeat):
            t = time.perf_counter()
            receipt = shard.write_shard(folder, info, keys, keys, results, [], {})
            writes.append(time.perf_counter() - t)
    order = np.random.default_rng(0).permutation(len(keys))
    for _ in range(repeat):
        reader = shard.ShardReader(folder)
        t = time.perf_counter()
        for row in order:
            reader.array(receipt["shard"], int(row), "fbank", keys[row])
        reads.append(time.perf_counter() - t)
        reader.close()
    return min(writes), min(reads), receipt["bytes"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.gamma(3.0, 150.0, args.items).astype(int), 100, 1500)
    results = [Result({"fbank": Seq(rng.standard_normal((n, 240), dtype=np.float32), rate=100.0)}, {})
               for n in lengths]
    keys = [f"k{i:05d}" for i in range(args.items)]
    mb = lengths.sum() * 240 * 4 / 1e6
    print(f"{args.items} items, {mb:.0f} MB of float32 values; best of {args.repeat}")
    figures = {}
    for checksum in (False, True):
        with tempfile.TemporaryDirectory() as folder:
            figures[checksum] = run(folder, results, keys, checksum, args.repeat)
        w, r, size = figures[checksum]
        print(f"{'fletcher32' if checksum else 'no checksum':>12}: write {mb / w:7.0f} MB/s, "
              f"read {mb / r:7.0f} MB/s ({args.items / r:6.0f} items/s), file {size / 1e6:.0f} MB")
    (w0, r0, _), (w1, r1, _) = figures[False], figures[True]
    print(f"checksum cost: write x{w1 / w0:.2f}, read x{r1 / r0:.2f}")


if __name__ == "__main__":
    main()
