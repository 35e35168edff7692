"""The `heads` command: train and evaluate fusion heads on the feature cache.

    heads list
    heads config tsin [--preset paper] [--set key=value]
    heads train --model tsin --cache DIR --protocol session [--preset demo] [--set key=value]
    heads evaluate RUN --cache DIR [--dataset NAME]
    heads report RUN [RUN ...]
    heads predict RUN --dataset table --root new.csv [--cache DIR] [--out preds.csv]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from pipeline.errors import add_debug_option, configure_logs, report
from pipeline.options import add_manifests_option
from pipeline.registry import UnknownName
from pipeline.stage import ConfigError

from .inputs import StagesMissing, check_cache, check_inputs, preset_dev
from .models import load_all
from .protocols import DEV_CHOICES, PROTOCOLS, LeakageError, ProtocolError


class UsageError(Exception):
    """A bad command line: reported before any work."""


def main(argv=None):
    from pipeline.api import NotInCache
    from pipeline.shard import ShardError
    from pipeline.store import IndexDamaged
    from pipeline.presets import use_manifest_dirs
    from pipeline import command_environment
    from .checkpoint import UnsafeCheckpoint
    from .resume import OtherExperiment
    command_environment()
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    configure_logs(args.debug)
    try:
        use_manifest_dirs(args.manifests)
        return args.func(args) or 0
    except StagesMissing as e:
        print(f"heads: {e}", file=sys.stderr)
        return 3
    except (UsageError, UnknownName, ConfigError, ProtocolError, LeakageError, NotInCache,
            FileNotFoundError, UnsafeCheckpoint, OtherExperiment) as e:
        print(f"heads: error: {e}", file=sys.stderr)
        return 2
    except (IndexDamaged, ShardError) as e:     # the cache needs repair: one line, the command that repairs it
        print(f"heads: error: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Exception) as e:      # Ctrl-C, SQLite, HDF5, a full disk: one line
        return report("heads", e, args.debug, interrupted="interrupted")


def _parser():
    from pipeline.store import default_cache_dir
    p = argparse.ArgumentParser(prog="heads", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="registered heads, their variants and the stages each consumes")
    ls.set_defaults(func=cmd_list)

    c = sub.add_parser("config", help="a head's resolved preset as TOML, each value with its source")
    c.add_argument("model", help="head name (see `heads list`)")
    c.add_argument("--preset", default="paper", help="paper (the published recipe) or demo")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="head option")
    c.set_defaults(func=cmd_config)

    _train_command(sub, default_cache_dir)

    e = sub.add_parser("evaluate", help="score a run's checkpoints on an extracted corpus")
    e.add_argument("run")
    e.add_argument("--cache", default=default_cache_dir())
    e.add_argument("--dataset", help="dataset in the cache (default: the only one)")
    e.add_argument("--part", choices=["test", "all"],
                   help="test: each fold's own test items (same dataset only); all: every item "
                        "(default: test on the run's dataset, all elsewhere)")
    e.add_argument("--device")
    e.set_defaults(func=cmd_evaluate)

    _predict_command(sub, default_cache_dir)

    r = sub.add_parser("report", help="table of runs side by side, with the papers' numbers")
    r.add_argument("runs", nargs="+")
    r.add_argument("--json", action="store_true", help="the report as JSON (runs, papers, comparability)")
    r.set_defaults(func=cmd_report)
    add_manifests_option(sub)
    add_debug_option(sub)
    return p


def _train_command(sub, default_cache_dir):
    t = sub.add_parser("train", help="train a head with an evaluation protocol")
    t.add_argument("--model", required=True, help="head name (see `heads list`)")
    t.add_argument("--cache", default=default_cache_dir())
    t.add_argument("--dataset", help="dataset in the cache (default: the only one)")
    t.add_argument("--protocol", help="session, speaker, kfold, ratio, holdout, official (default: by the columns)")
    t.add_argument("--dev", choices=DEV_CHOICES,
                   help="dev part for model selection (default: the preset's `dev` in the manifests, "
                        "e.g. session-share for emmanet's paper preset; else none, fixed epochs)")
    t.add_argument("--folds", type=int, default=10, help="kfold: number of folds")
    t.add_argument("--ratios", default="3:1:1",
                   help="ratio protocol: train:dev:test parts; holdout: their shares (e.g. 7:1:2)")
    t.add_argument("--preset", default="paper", help="paper (the published recipe), demo, or a manifest's own")
    t.add_argument("--config", help="TOML file of head options (flat keys; [stage] tables: stage options)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="head option, or STAGE.KEY=VALUE: the stage option the features were extracted with")
    t.add_argument("--seeds", type=int, default=1, help="repeat with seeds SEED .. SEED+N-1")
    t.add_argument("--seed", type=int, default=0, help="first seed; also shuffles random protocols")
    t.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    t.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="autocast dtype of the forward pass (fp16 with loss scaling); default fp32")
    t.add_argument("--allow-missing", action="store_true",
                   help="train without the items that lack a feature (their ids are recorded)")
    t.add_argument("--out", help="run folder (default runs/<head>-<variant>-<protocol>-<time>); "
                                 "the same command with an existing --out continues that run")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)


# --- list -------------------------------------------------------------------

def cmd_list(args):
    from pipeline.presets import head_presets
    heads = load_all()
    if not heads:
        print("no heads registered")
    for name, cls in sorted(heads.items()):
        if name in heads.aliases:
            continue
        presets = ", ".join(head_presets().get(name, {})) or "none (no [preset] table in the manifests)"
        print(f"{name:<12} {cls.description}")
        aliases = sorted(a for a, target in heads.aliases.items() if target == name)
        if aliases:
            print(f"{'':<12} also named: {', '.join(aliases)}")
        print(f"{'':<12} needs {', '.join(cls.stages())} (pipeline extract --for {name}); "
              f"presets: {presets}")
        variants = _variants(cls)
        if variants:
            print(f"{'':<12} variants (--set ablation=...): {', '.join(variants)}")


def _variants(cls):
    import typing
    hints = typing.get_type_hints(cls.Config)
    return list(typing.get_args(hints["ablation"])) if "ablation" in hints else []


# --- config -----------------------------------------------------------------

def cmd_config(args):
    """Print the resolved options (valid TOML for --config), each with its
    source: the paper's section or our choice; the preset's and --set's
    changes to the paper's values are marked as such."""
    from .head import RUNTIME_FIELDS
    cls = load_all().get_or_fail(args.model)
    config, _stages = head_config(cls, args.preset, None, args.set)
    paper = asdict(cls.make_config("paper"))
    sources = cls.sources()
    set_keys = {pair.partition("=")[0].strip() for pair in args.set}
    print(f"# {cls.name}: {cls.description}\n# preset {args.preset}; sources: manifests/sources.toml, "
          f"[sources.{cls.name}] and its parents'")
    for name, value in asdict(config).items():
        if name in set_keys:
            note = "--set"
        elif value != paper[name]:
            note = f"preset {args.preset} (paper: {_toml_value(paper[name])})"
        elif name in RUNTIME_FIELDS:
            note = "runtime: how the run executes, not what it computes"
        else:
            note = sources.get(name, "NO SOURCE")
        print(f"{name} = {_toml_value(value)}  # {note}")


def _toml_value(value) -> str:
    import json
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


# --- train ------------------------------------------------------------------

def head_config(cls, preset, config_file, pairs):
    """(head Config, stage overrides): `--set key=value` and top-level keys of
    the TOML file are head options; `--set stage.key=value` and the file's
    tables are the options of a stage the head reads, as on `pipeline extract`
    (a `stages` list there is pipeline extract's, not a head option), over the preset's (presets.toml)."""
    from pipeline.options import head_options, stage_options
    from pipeline.presets import preset_stage_options
    dotted = [p for p in pairs if "." in p.partition("=")[0]]
    _, stages = stage_options(config_file, dotted)
    head = head_options(config_file, [p for p in pairs if p not in dotted])
    head = {k: v for k, v in head.items() if not isinstance(v, dict) and k != "stages"}
    return cls.make_config(preset, head), preset_stage_options(preset, stages)


def _without_missing(cache, dataset, cls, config, allow_missing, stages, preset) -> tuple:
    """(the cache to train from, {item id: why} of the items left out):
    refuses lacking features unless allow_missing, which names each item."""
    left_out = check_cache(cache, dataset, cls, config, allow_missing, stages, preset)
    for item_id, why in sorted(left_out.items()):
        print(f"heads: training without {item_id}: {why} (--allow-missing)", file=sys.stderr)
    return cache.leave_out(left_out, dataset), left_out


def _notice_unmounted(cache, dataset):
    from pipeline.cli import unmounted_notice
    if not cache.corpus_present(dataset):
        unmounted_notice("heads", cache.datasets()[dataset]["root"])


def _ratios(text):
    try:
        parts = tuple(int(x) for x in text.split(":"))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise UsageError(f"--ratios {text!r}: expected TRAIN:DEV:TEST, e.g. 3:1:1")
    return parts


def _folds(args, data, options) -> tuple:
    """(folds, leakage reports) of the --protocol, or of the one the items'
    columns allow (protocols.default_protocol); names the items left out."""
    from .protocols import default_protocol, make_folds
    args.protocol = args.protocol or default_protocol(data.items.values())
    folds, leakage = make_folds(args.protocol, list(data.items.values()), options)
    unused = len(data.items) - len({i for f in folds for i in (*f.train, *f.dev, *f.test)})
    if unused:
        print(f"heads: {unused} item(s) are in no part of the {args.protocol} protocol "
              "(e.g. no split tag)", file=sys.stderr)
    return folds, leakage


def _check_train_args(args):
    """The command line's own mistakes, before any work (exit 2)."""
    from .train import device_of
    if args.protocol:
        PROTOCOLS.get_or_fail(args.protocol)
    if args.seeds < 1:
        raise UsageError("--seeds must be >= 1")
    if args.precision == "fp16" and device_of(args.device).type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device (CPU kernels lack fp16 for some layers); "
                         "use bf16 or fp32 on CPU")


def cmd_train(args):
    from pipeline.api import Cache
    from .metrics import aggregate
    from .protocols import Options
    from .provenance import provenance
    from .report import report_table, write_run
    from .tasks import check_options
    from .train import device_of, run_folds

    cls = load_all().get_or_fail(args.model)
    _check_train_args(args)
    config, stages = head_config(cls, args.preset, args.config, args.set)
    args.dev = args.dev or preset_dev(cls, args.preset)
    check_inputs(cls, args.preset, config, stages)      # before any work: exit 2
    options = Options(dev=args.dev, k=args.folds, ratios=_ratios(args.ratios), seed=args.seed)
    cache = Cache(args.cache)
    dataset = cache.dataset(args.dataset)
    _notice_unmounted(cache, dataset)
    cache, left_out = _without_missing(cache, dataset, cls, config, args.allow_missing, stages, args.preset)
    data = cls.open_data(cache, dataset, config, stages)
    check_options(data.task, config, cls.name)      # the label set decides the task
    cls.check_dims(config, data.dims())
    for item_id, why in sorted(data.dropped.items()):
        print(f"heads: skipping {item_id}: extraction failed ({why})", file=sys.stderr)
    folds, leakage = _folds(args, data, options)
    variant = cls.variant(config)
    out = Path(args.out or f"runs/{cls.name}-{variant}-{args.protocol}-{time.strftime('%Y%m%d-%H%M%S')}")
    device = device_of(args.device)
    print(f"{cls.name} ({variant}, preset {args.preset}) on {dataset}: {len(data.items)} items, "
          f"{args.protocol} protocol, {len(folds)} folds x {args.seeds} seed(s), {device}")
    seeds = list(range(args.seed, args.seed + args.seeds))
    t0 = time.perf_counter()
    progress = not args.quiet and sys.stderr.isatty()     # bars only on a terminal, never into a log
    runs = run_folds(cls, config, data, folds, seeds, out, device, progress=progress, precision=args.precision)
    record = {
        "head": cls.name, "variant": variant, "preset": args.preset, "config": asdict(config),
        "stage_overrides": stages,
        "dataset": dataset, "corpus": data.corpus, "labelset": config.labelset, "classes": data.classes,
        "task": data.task.describe(),
        "protocol": {"name": args.protocol, "dev": args.dev, "k": args.folds if args.protocol == "kfold" else None,
                     "ratios": list(options.ratios) if args.protocol in ("ratio", "holdout") else None,
                     "split_seed": args.seed,
                     "folds": [{"name": f.name, "train": len(f.train), "dev": len(f.dev), "test": len(f.test)}
                               for f in folds]},
        "leakage_check": leakage, "seeds": seeds, "device": str(device),
        "train_seconds": round(time.perf_counter() - t0, 1), "dropped_items": data.dropped,
        "missing_items": left_out, "precision": args.precision,
        "runs": runs, "overall": aggregate(runs, data.classes, data.task.summary), "features": data.provenance(),
        "command": "heads " + " ".join(args.argv),
        "provenance": provenance(cache, dataset, cls.stages(config), stages, device),
    }
    write_run(out, record)
    record["_path"] = str(out)
    print(report_table([record]))
    print(f"results: {out / 'results.json'}\nplots: {out / 'confusion.png'}, {out / 'curves.png'}")


# --- evaluate ---------------------------------------------------------------

def cmd_evaluate(args):
    import json
    from pipeline.api import Cache
    from pipeline.stage import make_config
    from .metrics import aggregate
    from .report import load_run
    from . import standardize
    from .train import device_of, load_checkpoint, loader, predict, score

    record = load_run(args.run)
    run_dir = Path(record["_path"])
    heads = load_all()
    cls = heads.get_or_fail(record["head"])
    config = make_config(cls, record["config"])
    cache = Cache(args.cache)
    dataset = cache.dataset(args.dataset)
    part = args.part or ("test" if dataset == record["dataset"] else "all")
    if part == "test" and dataset != record["dataset"]:
        raise UsageError(f"--part test needs the run's own dataset ({record['dataset']}); use --part all")
    _notice_unmounted(cache, dataset)
    stages = record.get("stage_overrides") or {}
    check_cache(cache, dataset, cls, config, stages=stages)
    data = cls.open_data(cache, dataset, config, stages)
    standardize.prepare(cls, config, data)
    run_task = record.get("task") or {"kind": "classification", "classes": record["classes"]}
    if data.task.describe() != run_task:
        raise UsageError(f"the label set's task differs: run {run_task}, dataset {data.task.describe()}")
    device = device_of(args.device)
    runs = []
    for r in record["runs"]:
        model, ckpt = load_checkpoint(run_dir / r["checkpoint"], heads, device)
        if ckpt["dims"] != data.dims():
            raise UsageError(f"{r['checkpoint']}: trained on input widths {ckpt['dims']}, "
                             f"the cache gives {data.dims()}")
        tested = dict.fromkeys(data.item_of(i) for i in r["predictions"])
        ids = [i for i in tested if i in data.items] if part == "test" else data.ids
        pred = predict(model, loader(data.subset(ids), config, shuffle=False, device=device), device)
        metrics = score(pred, data.task)
        print(f"seed {r['seed']} {r['fold']}: {data.task.headline(metrics)} ({len(ids)} items)")
        runs.append({"seed": r["seed"], "fold": r["fold"], "metrics": metrics})
    overall = aggregate(runs, data.classes, data.task.summary)
    out = run_dir / f"evaluate-{dataset}-{part}.json"
    out.write_text(json.dumps({"dataset": dataset, "part": part, "runs": runs, "overall": overall,
                               "features": data.provenance()}, indent=1, sort_keys=True) + "\n")
    means = {name: overall[name]["mean"] for name in data.task.summary}
    print(f"overall: {data.task.headline(means)}; written to {out}")


# --- predict ----------------------------------------------------------------

def _predict_command(sub, default_cache_dir):
    p = sub.add_parser("predict", help="apply a run's fold models to new recordings (one CSV row per item)")
    p.add_argument("run")
    p.add_argument("--dataset", required=True, help="corpus reader of the new items, e.g. table")
    p.add_argument("--root", required=True, help="the new items' table file or corpus folder")
    p.add_argument("--cache", help="cache for their features (default RUN/predict/cache)")
    p.add_argument("--out", help="CSV to write (default RUN/predict/predictions.csv)")
    p.add_argument("--workers", type=int, help="local Dask workers for the extraction")
    p.add_argument("--scheduler", help="a Dask scheduler address, or 'sync' to extract in this process")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args):
    from pipeline.extraction import UsageError as ExtractUsage
    from .predict import PredictError, predict
    try:
        done = predict(args.run, args.dataset, args.root, args.cache, args.out, args.workers, args.scheduler,
                       args.device, progress=not args.quiet and sys.stderr.isatty())
    except (PredictError, ExtractUsage) as e:     # bad run, options or table: exit 2, as for train
        raise UsageError(str(e)) from None
    print(f"{done['predicted']} of {done['items']} item(s) predicted by {len(done['models'])} model(s); "
          f"{done['items'] - done['predicted']} with a reason; written to {done['out']}")


# --- report -----------------------------------------------------------------

def cmd_report(args):
    from .report import load_run, report_json, report_table
    records = [load_run(path) for path in args.runs]
    if args.json:
        import json
        return print(json.dumps(report_json(records), indent=1, sort_keys=True))
    print(report_table(records))
    for r in records:
        print(f"{Path(r['_path']).name}: plots {r['_path']}/confusion.png, {r['_path']}/curves.png")


if __name__ == "__main__":
    sys.exit(main())
