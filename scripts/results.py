"""The results table (docs/results.md) from the runs it lists.

Three steps, each a subcommand, so every figure in the table has a run
folder and the commands that made it behind it:

    python scripts/results.py run --out DIR [--seeds N] [NAME...]
        demo corpora, `pipeline extract --for HEAD --preset demo`, then
        `heads train ... --preset demo` for each listed run (all by default)
    python scripts/results.py snapshot --runs DIR/runs --label after > docs/results/after.json
        what `heads report --json` says of each run, with its commands and
        the code's commit (a snapshot is data: the table is rebuilt from it)
    python scripts/results.py write docs/results/before.json docs/results/after.json \
        --notes docs/results/notes.md > docs/results.md

The demo corpora are smoke tests, not benchmarks: the table shows that a
change kept every head training as before, not how good a head is.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# name -> what it trains: every head's demo preset on its demo corpus.
RUNS = {name: {"head": name, "dataset": "iemocap", "protocol": "session"}
        for name in ("tsin", "hff", "harmofusion", "harmofusion_mg", "muse", "muse_mg", "bert_mlp", "egemaps_mlp",
                     "fbank_bilstm")}
RUNS["emmanet"] = {"head": "emmanet", "dataset": "affwild2", "protocol": "official"}

# dataset -> (demo layout folder, the metric the table shows: the papers' headline)
CORPORA = {"iemocap": ("IEMOCAP_full_release", "ua"), "affwild2": ("Aff-Wild2", "mf1_all"),
           "mosei": ("CMU_MOSEI", "mae"), "meld": ("MELD.Raw", "wf1")}


def tool(name) -> str:
    """A console script of this environment (pipeline, heads)."""
    return str(Path(sys.executable).parent / name)


def demo_root(out: Path, dataset) -> Path:
    """The full demo corpus of `dataset` under out/corpora (written the first time)."""
    root = out / "corpora" / CORPORA[dataset][0]
    if not root.exists():
        subprocess.run([tool("pipeline"), "demo-corpus", "--layout", dataset, "--out", str(root), "--size", "full"],
                       check=True)
    return root


def commands(name, run, out: Path, seeds: int) -> list:
    """The run's extract and train command lines (`run`: head, dataset,
    protocol, and optional extra train `args`); the folder layout under `out`
    that the acceptance table (tests/test_acceptance.py) shares."""
    root, cache = out / "corpora" / CORPORA[run["dataset"]][0], out / f"cache-{run['dataset']}"
    return [
        [tool("pipeline"), "extract", "--dataset", run["dataset"], "--root", str(root), "--cache", str(cache),
         "--for", run["head"], "--preset", "demo", "--quiet"],
        [tool("heads"), "train", "--model", run["head"], "--cache", str(cache), "--protocol", run["protocol"],
         "--preset", "demo", "--seeds", str(seeds), "--out", str(out / "runs" / name), "--quiet",
         *run.get("args", ())],
    ]


def cmd_run(args) -> int:
    out = Path(args.out).resolve()
    failed = []
    for name in args.names or list(RUNS):
        run = RUNS[name]
        demo_root(out, run["dataset"])
        cmds = commands(name, run, out, args.seeds)
        (out / "runs").mkdir(parents=True, exist_ok=True)
        (out / "runs" / f"{name}.commands.json").write_text(json.dumps(cmds, indent=1))
        for cmd in cmds:
            if _run_waiting(cmd) != 0:
                failed.append(name)
                break
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _run_waiting(cmd, tries=60, wait_s=30) -> int:
    """Run `cmd`; while another extraction holds the cache (runs of this
    script side by side share caches), wait and try again."""
    for _ in range(tries):
        done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(done.stderr)
        if "another `pipeline extract` is running" not in done.stderr:
            return done.returncode
        time.sleep(wait_s)
    return done.returncode


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent)
    return done.stdout.strip() or "unknown"


def cmd_snapshot(args) -> int:
    runs = Path(args.runs)
    out = {"label": args.label, "commit": args.commit or _commit(), "runs": {}}
    for folder in sorted(p for p in runs.iterdir() if (p / "results.json").exists()):
        report = subprocess.run([tool("heads"), "report", "--json", str(folder)], capture_output=True,
                                text=True, check=True)
        (record,) = json.loads(report.stdout)
        metric = CORPORA[record["dataset"]][1]
        cmds = runs / f"{folder.name}.commands.json"
        results = json.loads((folder / "results.json").read_text())
        out["runs"][folder.name] = {
            "head": record["head"], "preset": record.get("preset"), "dataset": record["dataset"],
            "protocol": record.get("protocol"), "metric": metric,
            "per_seed": record["overall"][metric]["per_seed"], "mean": record["overall"][metric]["mean"],
            "train_seconds": results.get("train_seconds"),
            "commands": [_shown(c, runs.parent) for c in json.loads(cmds.read_text())]
                        if cmds.exists() else [results["command"].replace(str(runs.parent), "$OUT")],
        }
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


def _shown(cmd, out) -> str:
    """A command as a user types it: the tool's name, $OUT for the output folder."""
    return " ".join([Path(cmd[0]).name, *cmd[1:]]).replace(str(out), "$OUT")


def _cell(run, seed=None) -> str:
    if run is None:
        return "—"
    if seed is not None:
        value = run["per_seed"].get(str(seed))
        return "—" if value is None else f"{value:.3f}"
    seeds = len(run["per_seed"])
    return f"{run['mean']:.3f} ({seeds} seed{'s' if seeds > 1 else ''})"


def cmd_write(args) -> int:
    snaps = [json.loads(Path(p).read_text()) for p in args.snapshots]
    names = list(dict.fromkeys(n for s in snaps for n in s["runs"]))
    head = ["run", "metric"] + [f"{s['label']} ({s['commit']}), seed 0" for s in snaps] + \
           [f"{snaps[-1]['label']}, all seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        runs = [s["runs"].get(name) for s in snaps]
        metric = next(r["metric"] for r in runs if r).upper().replace("MF1_ALL", "mean F1 (8 classes)")
        lines.append("| " + " | ".join([name, metric] + [_cell(r, 0) for r in runs] + [_cell(runs[-1])]) + " |")
    notes = Path(args.notes).read_text().strip() if args.notes else ""
    sources = " ".join(args.snapshots) + (f" --notes {args.notes}" if args.notes else "")
    print(TEMPLATE.format(table="\n".join(lines), commands=_commands(snaps[-1]), sources=sources, notes=notes))
    return 0


def _commands(snap) -> str:
    out = []
    for name, run in snap["runs"].items():
        out.append(f"- **{name}**: " + "; ".join(f"`{c}`" for c in run["commands"]))
    return "\n".join(out)


TEMPLATE = """# Results on the demo corpora

Made by `python scripts/results.py write {sources}` from snapshots of run
folders (`scripts/results.py` says how to make them). Each head's demo
preset, leave one session out on the full IEMOCAP demo corpus (UA, 4
classes), EMMA-Net on the Aff-Wild2 demo's official split (per-frame mean F1
over the 8 expressions).

The demo corpora are smoke tests, not benchmarks: their speech is
synthesised, their emotions are planted in the wording and the prosody, and
the text model is the packaged MiniLM. These figures show that a head trains
and that a change to the code did not break it; they are never comparable
with a paper's (`heads report` says why for each run).

{table}

{notes}

The commands behind the last column:

{commands}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the listed runs (all by default)")
    r.add_argument("--out", required=True)
    r.add_argument("--seeds", type=int, default=1)
    r.add_argument("names", nargs="*", metavar="NAME", help=f"among {', '.join(RUNS)}")
    s = sub.add_parser("snapshot", help="the runs' report as JSON, with commands and commit")
    s.add_argument("--runs", required=True)
    s.add_argument("--label", required=True)
    s.add_argument("--commit", help="the code's commit (default: this checkout's)")
    w = sub.add_parser("write", help="docs/results.md from snapshots, oldest first")
    w.add_argument("snapshots", nargs="+")
    w.add_argument("--notes", help="a Markdown file put under the table (what moved a figure, and why)")
    args = p.parse_args(argv)
    unknown = sorted(set(getattr(args, "names", None) or ()) - set(RUNS))
    if unknown:
        p.error(f"unknown run(s) {', '.join(unknown)} (known: {', '.join(RUNS)})")
    return {"run": cmd_run, "snapshot": cmd_snapshot, "write": cmd_write}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
