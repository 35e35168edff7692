"""Read throughput of the heads' Dataset (a script, not a test: it prints figures).

    .venv/bin/python bench/bench_heads_data.py --cache DIR [--model tsin] [--preset demo] [--epochs 3]

For the head's inputs on an extracted cache it times, in a fresh process:
  open       finding every item's rows under the current cache keys
  epoch k    one pass of a shuffled DataLoader (the head's batch size, its
             collate: padding and masks) over every labelled item; epoch 1
             includes reading each shard's arrays once, later epochs read
             from memory
and, for scale, one training epoch of the head itself on the same items
(forward, loss, backward, optimiser step), so the figures say whether
reading can be the bottleneck. Items/s = items / wall seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from heads.models import load_all  # noqa: E402
from heads.train import loader, seed_everything  # noqa: E402
from pipeline.api import Cache  # noqa: E402
from pipeline.presets import preset_stage_options  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", required=True)
    p.add_argument("--dataset")
    p.add_argument("--model", default="tsin")
    p.add_argument("--preset", default="demo")
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)

    cls = load_all().get_or_fail(args.model)
    config = cls.make_config(args.preset)
    cache = Cache(args.cache)
    dataset = args.dataset or cache.dataset(None)
    t = time.perf_counter()
    # The preset's stage options (the demo's MiniLM) select the extraction read, as on `heads train`.
    data = cls.open_data(cache, dataset, config, preset_stage_options(args.preset))
    print(f"{args.model} inputs on {dataset}: {len(data.ids)} items; "
          f"open {time.perf_counter() - t:.2f} s")
    items = data.subset(data.ids)
    batches = loader(items, config, shuffle=True)
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        n = sum(len(batch["id"]) for batch in batches)
        wall = time.perf_counter() - t
        print(f"read epoch {epoch}: {n / wall:9.1f} items/s ({wall:.2f} s)")
    train_epoch(cls, config, data, batches)


def train_epoch(cls, config, data, batches):
    seed_everything(0)
    torch.set_num_threads(max(config.threads, 1))
    model = cls(config, data.dims(), max(len(data.classes), 1))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    t, n = time.perf_counter(), 0
    for batch in batches:
        loss = model.loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(batch["id"])
    wall = time.perf_counter() - t
    print(f"train epoch: {n / wall:9.1f} items/s ({wall:.2f} s, {config.threads} thread(s))")


if __name__ == "__main__":
    main()
