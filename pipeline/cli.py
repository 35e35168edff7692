"""The `pipeline` command: extract, status, list, config, verify, inspect, demo-corpus."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import add_debug_option, configure_logs, report
from .extraction import UsageError, cache_lock, dataset_and_root, read_items
from .faults import InfraFault
from .options import add_manifests_option
from .registry import UnknownName
from .stage import ConfigError
from .store import default_cache_dir


def main(argv=None):
    from .api import NotInCache
    from .shard import ShardError
    from .store import IndexDamaged
    from .presets import use_manifest_dirs
    from . import command_environment
    command_environment()
    args = _parser().parse_args(argv)
    configure_logs(args.debug)
    try:
        use_manifest_dirs(args.manifests)
        return args.func(args) or 0
    except (UsageError, UnknownName, ConfigError, FileNotFoundError, NotInCache) as e:
        print(f"pipeline: error: {e}", file=sys.stderr)
        return 2
    except (IndexDamaged, ShardError) as e:     # the cache needs repair: one line, the command that repairs it
        print(f"pipeline: error: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Exception) as e:      # Ctrl-C, SQLite, HDF5, Dask, a full disk: one line
        return report("pipeline", e, args.debug)


def _parser():
    p = argparse.ArgumentParser(prog="pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("extract", help="compute missing features into the cache")
    _selection_args(e)
    e.add_argument("--workers", type=int, help="local Dask workers (default: one per core)")
    e.add_argument("--scheduler", help="address of an existing Dask scheduler, or 'sync' to run in-process")
    e.add_argument("--gpu-workers", type=int,
                   help="local workers that run the neural stages, one GPU each, round robin over the visible "
                        "ones (default: one per visible CUDA device, 0 without CUDA)")
    e.add_argument("--batch", type=int, help="items per task (default: per stage)")
    e.add_argument("--retry-failed", action="store_true", help="recompute items that failed before")
    e.add_argument("--strict", action="store_true", help="exit 1 when any item failed")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.add_argument("--json", action="store_true", help="print the per-stage tally as JSON")
    e.add_argument("--worker-timeout", type=float, default=60.0, help="stop after S s with no live worker (60)")
    e.set_defaults(func=cmd_extract)

    s = sub.add_parser("status", help="per stage: up to date / stale / missing / failed")
    _selection_args(s)
    s.add_argument("--errors", action="store_true", help="list every failed item with its message")
    s.add_argument("--json", action="store_true", help="print the states as JSON (with every error)")
    s.set_defaults(func=cmd_status)

    ls = sub.add_parser("list", help="corpora, stages and named configurations")
    ls.set_defaults(func=cmd_list)

    c = sub.add_parser("config", help="a stage's options and defaults, or a named configuration's, as TOML")
    c.add_argument("stage")
    c.set_defaults(func=cmd_config)

    _maintenance_commands(sub)

    i = sub.add_parser("inspect", help="print (and plot) one item's stage output")
    i.add_argument("item")
    i.add_argument("--stage", required=True)
    i.add_argument("--cache", default=default_cache_dir())
    i.add_argument("--dataset")
    i.add_argument("--png", help="write a plot of the arrays to this file")
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser("demo-corpus", help="write a synthetic corpus in a real corpus layout")
    d.add_argument("--out", required=True)
    d.add_argument("--layout", default="iemocap")
    d.add_argument("--size", default="small", choices=["small", "full"])
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quirks", action="store_true", help="add the bad-input cases (truncated wav...)")
    d.add_argument("--utterances-per-speaker", type=int)
    d.add_argument("--no-video", action="store_true")
    d.set_defaults(func=cmd_demo)
    add_manifests_option(sub)
    add_debug_option(sub)
    return p


def _maintenance_commands(sub):
    v = sub.add_parser("verify", help="re-hash every shard; name any corrupt or missing one")
    v.add_argument("--cache", default=default_cache_dir())
    v.add_argument("--fix", action="store_true", help="forget bad shards so the next extract recomputes them")
    v.add_argument("--rebuild-index", action="store_true",
                   help="rebuild index.sqlite from the shards and manifests, then verify")
    v.set_defaults(func=cmd_verify)

    g = sub.add_parser("gc", help="remove stage configurations nothing asks for (dry run unless --yes)")
    g.add_argument("--cache", default=default_cache_dir())
    g.add_argument("--keep-for", metavar="HEAD[,HEAD...]", help="keep what these heads read (as --for)")
    g.add_argument("--preset", help="with --keep-for: the heads' preset (default paper; [preset.HEAD.P] tables)")
    g.add_argument("--keep", nargs="+", metavar="LABEL", help="keep these stage specs (and what they consume)")
    g.add_argument("--older-than", type=float, metavar="DAYS",
                   help="remove only configurations not written to for this many days")
    g.add_argument("--yes", action="store_true", help="delete (default: print what would go)")
    g.set_defaults(func=cmd_gc)


def _selection_args(p):
    p.add_argument("--dataset", help="corpus reader name (default: the one the cache holds)")
    p.add_argument("--root", help="corpus folder (default: the one recorded in the cache)")
    p.add_argument("--cache", default=default_cache_dir(), help="cache folder (default ./.emocache or $EMOCACHE_DIR)")
    p.add_argument("--stages", help="comma-separated stage specs, e.g. fbank,mfcc@tsin")
    p.add_argument("--for", dest="for_head", metavar="HEAD[,HEAD...]",
                   help="the stages these heads read with --preset (its `extract` list in the manifests)")
    p.add_argument("--preset", help="with --for: the heads' preset (default paper; `pipeline list` shows them)")
    p.add_argument("--config", help="TOML file: `stages = [...]` and a table of options per stage")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE")


# --- selection: specs, dataset, items ---------------------------------------

def _specs(args):
    from .graph import resolve
    from .presets import check_preset_inputs
    specs = resolve(*_selection(args))      # a paper preset refuses what it would have to substitute:
    return check_preset_inputs(args.preset, specs) if args.for_head else specs


def _selection(args):
    """(labels, overrides): with --for, the head preset's stage options lie under --set/--config."""
    from .graph import default_labels
    from .options import stage_options
    from .presets import preset_stage_options
    file_stages, overrides = stage_options(args.config, args.set)
    return _labels(args, file_stages, default_labels), \
        preset_stage_options(args.preset, overrides) if args.for_head else overrides


def _labels(args, file_stages, default_labels):
    if args.stages:
        return [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.for_head:
        from .presets import head_labels
        return head_labels(args.for_head, args.preset)
    return list(file_stages or default_labels())


def unmounted_notice(prog, root):
    print(f"{prog}: the corpus root {root} is not there; outputs are judged by the digests recorded "
          f"at extraction (unverified)", file=sys.stderr)


# --- commands ---------------------------------------------------------------

def cmd_extract(args):
    from .api import extract
    specs = _specs(args)        # bad options and absent models: exit 2 here, before any work
    print("".join(f"{spec.label}: {line}\n" for spec in specs for line in spec.stage.notes()), end="", file=sys.stderr)
    labels, overrides = _selection(args)
    seen = {}

    def read(items):     # the reader's findings, before the work starts
        seen.update(items=items, t0=time.perf_counter())
        _print_warnings(items)
    try:
        tallies = extract(args.dataset, args.root, args.cache, labels, overrides, args.workers, args.scheduler,
                          args.gpu_workers, args.retry_failed, args.batch,
                          progress=not args.quiet and sys.stderr.isatty(), on_items=read,
                          worker_timeout=args.worker_timeout)
    except InfraFault as fault:     # the machine's fault, not the items': exit 3 after the summary
        items = seen["items"]
        _print_summary(args.dataset or items[0].corpus, len(items), fault.tallies, time.perf_counter() - seen["t0"])
        print(f"pipeline: error: {fault}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(tallies.to_json(), indent=1))
    else:
        _print_summary(tallies.dataset, tallies.n_items, tallies, tallies.seconds)
    failed = sum(t.failed + t.failed_before for t in tallies.values())
    return 1 if args.strict and failed else 0


def _print_warnings(items):
    for line in getattr(items, "report", ()):
        print(f"reader: {line}", file=sys.stderr)
    warned = [(it.id, w) for it in items for w in it.warnings]
    for item_id, w in warned[:10]:
        print(f"warning: {item_id}: {w}", file=sys.stderr)
    if len(warned) > 10:
        print(f"warning: ... and {len(warned) - 10} more reader warnings", file=sys.stderr)


def _print_summary(dataset, n_items, tallies, seconds):
    print(f"\n{dataset}: {n_items} items, {seconds:.1f} s")
    print(f"{'stage':<22}{'computed':>9}{'reused':>9}{'failed':>9}{'skipped':>9}{'seconds':>9}")
    for label, t in tallies.items():
        failed = f"{t.failed}" + (f"+{t.failed_before}" if t.failed_before else "")
        print(f"{label:<22}{t.computed:>9}{t.reused:>9}{failed:>9}{t.skipped:>9}{t.seconds:>9.1f}")
    for label, t in tallies.items():
        if t.places:
            print(f"  {label}: ran on " + ", ".join(f"{w} ({d})" for w, d in sorted(t.places)))
    for label, t in tallies.items():
        for name, (total, n) in t.meta_sums.items():
            if n:
                print(f"  {label}: mean {name} = {total / n:.3f} over {n} items computed now")
    for label, t in tallies.items():
        msgs = t.messages + getattr(t, "cached_errors", [])
        for item_id, msg in msgs[:10]:
            print(f"  {label}: {item_id}: {msg}")
        if len(msgs) > 10:
            print(f"  {label}: ... {len(msgs) - 10} more (pipeline status --errors)")
    if any(t.failed_before for t in tallies.values()):
        print("(failed: new+earlier; earlier failures are not retried unless --retry-failed or the input changes)")


def cmd_status(args):
    from .api import Cache, stage_state
    cache = Cache(args.cache)
    specs = _specs(args)
    dataset, root = dataset_and_root(cache.index, args.dataset, args.root, must_exist=False)
    if os.path.exists(root):
        cache.use_items(dataset, read_items(dataset, root))
    else:
        unmounted_notice("pipeline", root)
    items = cache.items(dataset)
    rows = {spec.label: stage_state(cache.status(spec, dataset), len(items)) for spec in specs}
    if args.json:
        print(json.dumps({"dataset": dataset, "root": root, "items": len(items), "stages": rows}, indent=1))
        return
    print(f"{dataset} at {root}: {len(items)} items")
    print(f"{'stage':<22}{'state':<12}{'current':>9}{'stale':>9}{'missing':>9}{'failed':>9}")
    for label, row in rows.items():
        n = row["counts"]
        print(f"{label:<22}{row['state']:<12}{n['current']:>9}{n['stale']:>9}{n['missing']:>9}{n['failed']:>9}")
        for item_id, why in list(row["missing_inputs"].items())[:10]:
            print(f"  {item_id}: {why}")
        if args.errors:
            for item_id, msg in row["errors"].items():
                print(f"  {item_id}: {msg}")


def cmd_list(args):
    from .corpora import load_all as corpora
    from .demo import load_all as demo_layouts
    from .presets import head_presets, named_configs
    from .stages import load_all as stages
    print("corpora:", ", ".join(sorted(corpora())))
    print("demo layouts:", ", ".join(sorted(demo_layouts())))
    print("stages:")
    for name, cls in sorted(stages().items()):
        defaults = cls.Config()
        inputs = list(cls.reads) + [f"<{getattr(defaults, field)}>" for field in cls.consumes.values()]
        summary = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<14} v{cls.version:<4} {','.join(inputs) or '-':<14} {summary}")
    print("  (inputs: item fields, and <upstream stages> consumed)")
    print("named configurations:", ", ".join(sorted(named_configs())) or "none")
    print("stage lists (--for HEAD --preset P):" + ("" if head_presets() else " none"))
    for head, presets in sorted(head_presets().items()):
        for name, preset in presets.items():
            print(f"  {head} {name}: {', '.join(preset.extract)}" + (f"  ({preset.about})" if preset.about else ""))


def cmd_config(args):
    """`fbank`: the defaults; `fbank@tsin`: the named configuration, resolved
    (printed as a table `--config` accepts)."""
    import dataclasses
    import tomli_w
    from .presets import named_configs
    from .stage import make_config
    from .stages import load_all
    stage_name, _, name = args.stage.partition("@")
    cls = load_all().get_or_fail(stage_name)
    values = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    header = f"# {cls.name} v{cls.version}"
    if name:
        known = named_configs()
        if args.stage not in known:
            raise UnknownName(f"unknown named configuration {args.stage!r} (known: "
                              f"{', '.join(sorted(k for k in known if k.startswith(stage_name + '@'))) or 'none'})")
        _stage, overrides, where = known[args.stage]
        values = dataclasses.asdict(make_config(cls, {**values, **overrides}))
        header += f"; named configuration from {where}, setting {', '.join(sorted(overrides)) or 'nothing'}"
    unset = [k for k, v in values.items() if v is None]
    print(f"{header}; options left out are None: {', '.join(unset) or 'none'}")
    print(tomli_w.dumps({args.stage: {k: (list(v) if isinstance(v, tuple) else v)
                                      for k, v in values.items() if v is not None}}), end="")


def cmd_verify(args):
    from .store import INDEX_FILE, Index, rebuild_index, verify
    if args.rebuild_index:
        counts = rebuild_index(args.cache)
        print(f"rebuilt {Path(args.cache) / INDEX_FILE} from {counts['shards']} shard(s) "
              f"and {counts['datasets']} manifest(s)")
    if not (Path(args.cache) / INDEX_FILE).exists():
        raise UsageError(f"no cache at {args.cache}")
    report = verify(args.cache)
    print(f"{len(report['ok'])} shards ok")
    for problem in report["problems"]:
        print(f"problem: {problem}")
    for kind in ("corrupt", "missing", "unindexed"):
        for shard in report[kind]:
            print(f"{kind}: {Path(args.cache) / shard}")
    bad = report["corrupt"] + report["missing"]
    if bad and args.fix:
        Index(args.cache).drop_shards(bad)
        print(f"forgot {len(bad)} shard(s); the next extract recomputes their items")
    if report["problems"]:
        print(f"to rebuild the index from the shards: pipeline verify --rebuild-index --cache {args.cache}")
    return 1 if report["problems"] or (bad and not args.fix) else 0


def cmd_gc(args):
    from .gc import collect, remove
    from .graph import resolve
    from .store import Index
    if not (args.keep_for or args.keep or args.older_than is not None):
        raise UsageError("say what to keep: --keep-for HEAD[,HEAD...], --keep LABEL..., and/or --older-than DAYS")
    if args.older_than is not None and args.older_than < 0:
        raise UsageError("--older-than must be >= 0 days")
    from .presets import head_labels, preset_stage_options
    labels = head_labels(args.keep_for, args.preset) if args.keep_for else []
    labels += [label for label in args.keep or () if label not in labels]
    keep = {c.config_id for spec in resolve(labels, preset_stage_options(args.preset)) for c in _closure(spec)}
    with cache_lock(args.cache):
        index = Index(args.cache)
        doomed = collect(index, keep, args.older_than)
        for d in doomed:
            print(f"{'removing' if args.yes else 'would remove'} {d.label or d.config_id} "
                  f"({d.config_id}): {d.shards} shard(s), {d.bytes / 2**20:.1f} MiB")
        total = sum(d.bytes for d in doomed) / 2**20
        if args.yes:
            remove(index, doomed)
            print(f"removed {len(doomed)} configuration(s), {total:.1f} MiB")
        else:
            print(f"{len(doomed)} configuration(s), {total:.1f} MiB; dry run: add --yes to delete")


def _closure(spec):
    from .graph import closure
    return closure(spec)


def cmd_inspect(args):
    from .api import Cache
    cache = Cache(args.cache)
    feats = cache.load(args.stage, [args.item], args.dataset, allow_stale=True)[args.item]
    for name, arr in feats.arrays.items():
        extra = ""
        if name in feats.times and len(feats.times[name]):
            t = feats.times[name]
            extra = f", steps at {t[0]:.3f}..{t[-1]:.3f} s"
        print(f"{name}: shape {tuple(arr.shape)} {arr.dtype}{extra}")
    if feats.meta:
        print("meta:", feats.meta)
    if args.png:
        from .plot import plot_features
        plot_features(feats, f"{args.item} / {args.stage}", args.png)
        print(f"wrote {args.png}")


def cmd_demo(args):
    from .demo import make_demo
    opts = {"quirks": True} if args.quirks else {}   # only layouts that have bad-input cases take it
    if args.utterances_per_speaker:
        opts["utterances_per_speaker"] = args.utterances_per_speaker
    if args.no_video:
        opts["video"] = False
    try:
        make_demo(args.layout, args.out, size=args.size, seed=args.seed, **opts)
    except ValueError as e:      # an option the layout lacks, a folder that is not a demo corpus
        if isinstance(e, UnknownName):
            raise
        raise UsageError(str(e)) from None
    print(f"wrote a {args.size} {args.layout} demo corpus to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
