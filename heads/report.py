"""Run folders: results.json, confusion.png, curves.png, and the report table.

A run folder holds everything needed to trust and reuse a result: the full
config, the protocol with every fold's sizes and its leakage check, the seeds,
per-run and overall metrics, the cache keys of every feature read (so the
exact inputs can be named later), and the checkpoints. `report_table` prints
runs side by side and, where the head, variant, label set and protocol match,
the numbers the paper reports (manifests/papers.toml).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


RESULTS = "results.json"
PAPERS_FILE = "papers.toml"     # a packaged manifest

# Report columns: summary metric -> header, in table order. A table shows the
# columns its runs have (a classification's WA..MF1, a regression's ACC-2..r).
COLUMNS = {"wa": "WA", "ua": "UA", "wf1": "WF1", "mf1": "MF1", "mf1_all": "MF1all", "acc2": "ACC-2", "f1_2": "F1-2",
           "acc2_nonzero": "ACC-2 nz", "acc7": "ACC-7", "mae": "MAE", "corr": "r"}
# Metrics that are not fractions: printed as they are, not in %.
PLAIN = {"mae", "corr"}


def write_run(out_dir: Path, record: dict):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    rounded = " (rounded scores)" if record.get("task", {}).get("kind") == "regression" else ""
    plot_confusion(out_dir / "confusion.png", record["overall"]["confusion"], record["classes"],
                   f"{record['head']} ({record['variant']}) {record['protocol']['name']}{rounded}")
    plot_curves(out_dir / "curves.png", record["runs"], record["config"].get("select_metric", "ua"))
    weights = layer_weights(record)
    if weights:
        plot_layer_weights(out_dir / "layer_weights.png", weights, f"{record['head']} ({record['variant']})")


def layer_weights(record) -> list:
    """Per run, the layer weights a head learned (e.g. superb's), or []."""
    return [r["learned"]["layer_weights"] for r in record["runs"] if r.get("learned", {}).get("layer_weights")]


def plot_layer_weights(path, weights, title):
    """The learned weight of each cached layer: one line per run, the mean as bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    w = np.asarray(weights, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.4 * w.shape[1] + 2), 3.5))
    ax.bar(range(w.shape[1]), w.mean(0), color="lightsteelblue", label="mean over runs")
    for row in w:
        ax.plot(range(w.shape[1]), row, color="black", alpha=0.3, marker=".", lw=0.8)
    ax.set(xlabel="cached layer", ylabel="softmax weight", title=f"{title}: learned layer weights")
    ax.set_xticks(range(w.shape[1]))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_run(path) -> dict:
    path = Path(path)
    file = path / RESULTS if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"{path}: no {RESULTS} (not a heads run folder)")
    record = json.loads(file.read_text())
    record["_path"] = str(file.parent)
    return record


def plot_confusion(path, matrix, classes, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = np.asarray(matrix, dtype=float)
    rates = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{rates[i, j]:.2f}\n({int(m[i, j])})", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"{title}\nrow-normalised, summed over folds and seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(path, runs, metric="ua"):
    """Training loss (and the dev selection metric when there is a dev part)
    per epoch, one line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    has_dev = any(f"dev_{metric}" in row for r in runs for row in r["history"])
    fig, axes = plt.subplots(1, 2 if has_dev else 1, figsize=(10 if has_dev else 5.5, 4), squeeze=False)
    for r in runs:
        epochs = [row["epoch"] for row in r["history"]]
        label = f"s{r['seed']} {r['fold']}"
        axes[0, 0].plot(epochs, [row["train_loss"] for row in r["history"]], label=label)
        if has_dev:
            axes[0, 1].plot(epochs, [row.get(f"dev_{metric}", np.nan) for row in r["history"]], label=label)
    axes[0, 0].set(xlabel="epoch", ylabel="training loss", title="training loss")
    if has_dev:
        axes[0, 1].set(xlabel="epoch", ylabel=f"dev {metric}", title=f"dev {metric} (model selection)")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def paper_results() -> list:
    from pipeline.presets import packaged
    return packaged(PAPERS_FILE).get("result", [])


def matching_papers(record, papers=None) -> list:
    """Paper rows for the same head, variant, corpus, label set and protocol."""
    proto = record["protocol"]
    out = []
    for p in papers if papers is not None else paper_results():
        same = (p["head"] == record["head"] and p.get("variant", "full") == record["variant"]
                and p["labelset"] == record["labelset"] and p["protocol"] == proto["name"]
                and p.get("dataset", record["corpus"]) == record["corpus"])
        if same and "folds" in p:
            same = p["folds"] == len(proto["folds"])
        if same and "ratios" in p:
            same = list(p["ratios"]) == list(proto.get("ratios") or [])
        if same:
            out.append(p)
    return out


def _cell(summary, name):
    s = summary.get(name)
    if not s:
        return "-"
    if name in PLAIN:
        return f"{s['mean']:.3f}±{s['std_folds']:.3f}"
    return f"{100 * s['mean']:5.2f}±{100 * s['std_folds']:4.2f}"


def _paper_cell(p, name):
    if name not in p:
        return "-"
    return f"{p[name]:.3f}" if name in PLAIN else f"{100 * p[name]:5.2f}"


def report_json(records) -> list:
    """The report as data (`heads report --json`): per run, its row, and per
    matching paper row its figures or why the run is not comparable to it."""
    from .comparable import reasons
    out = []
    for r in records:
        why = reasons(r)
        out.append({"run": r.get("_path"), "head": r["head"], "variant": r["variant"], "preset": r.get("preset"),
                    "protocol": r["protocol"]["name"], "folds": len(r["protocol"]["folds"]),
                    "seeds": len(r["seeds"]), "labelset": r.get("labelset"), "dataset": r.get("dataset"),
                    "overall": {c: r["overall"][c] for c in COLUMNS if c in r["overall"]},
                    "papers": [{"paper": p["paper"], "comparable": not why, "reasons": why,
                                "figures": {c: p[c] for c in COLUMNS if c in p} if not why else {}}
                               for p in matching_papers(r)]})
    return out


def report_table(records) -> str:
    """Runs side by side (mean ± std over folds, in % but for MAE and r),
    paper numbers beneath each."""
    from .comparable import reasons

    def prefix(run, head, variant, preset, protocol, folds, seeds):
        return f"{run[:28]:<28} {head:<12} {variant:<11} {preset:<7} {protocol:<9} {folds:>5} {seeds:>5} "
    columns = [c for c in COLUMNS if any(c in r["overall"] for r in records)] or list(COLUMNS)[:4]
    header = prefix("run", "head", "variant", "preset", "protocol", "folds", "seeds") + \
        " ".join(f"{COLUMNS[c]:>11}" for c in columns)
    width = len(prefix("", "", "", "", "", "", ""))
    lines = [header, "-" * len(header)]
    for r in records:
        o = r["overall"]
        lines.append(prefix(Path(r.get("_path", "")).name or "?", r["head"], r["variant"], r.get("preset", "?"),
                            r["protocol"]["name"], len(r["protocol"]["folds"]), len(r["seeds"]))
                     + " ".join(f"{_cell(o, c):>11}" for c in columns))
        why = reasons(r)
        for p in matching_papers(r):
            if why:
                lines.append(f"  not comparable to {p['paper']}: {'; '.join(why)}")
                continue
            lines.append(f"{'  paper ' + p['paper']:<{width}}"
                         + " ".join(f"{_paper_cell(p, c):>11}" for c in columns).rstrip(" -"))
        weights = layer_weights(r)
        if weights:
            mean = np.mean(weights, axis=0)
            lines.append("  layer weights (mean over runs): " + " ".join(f"{k}:{w:.3f}" for k, w in enumerate(mean)))
    return "\n".join(lines)
