"""Acceptance (`make acceptance`): every head's demo preset, end to end on
the full demo corpora, as one table.

Each row extracts `--for HEAD --preset demo`, trains with `heads train
--preset demo` and checks the row's thresholds on the mean over its seeds:

- every IEMOCAP classification head, full model, leave one session out,
  3 seeds: UA >= 0.8, and above its own speech-only and text-only
  ablations where it has them;
- EMMA-Net: per-frame mean F1 over the 8 expressions >= 0.8 (official split);
- the single-modality baselines: UA >= 0.6;
- HFF's MOSEI sentiment regression and the text baseline on MELD's seven
  emotions (official splits).

The demo corpora are smoke tests, not benchmarks: the thresholds say that
a head learns what the corpus plants, not how good it is. SUPERB has no
row: no SSL model ships, and a random one learns nothing.

The rows take hours on 2 CPU cores. With EMOCACHE_ACCEPTANCE_DIR set, the
corpora, caches and run folders are kept there, so a rerun (or
`scripts/results.py run --out` the same folder) reuses every finished fold.
"""
from __future__ import annotations

import json
import operator
import os
import runpy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from heads.cli import main as heads
from pipeline.cli import main as pipeline

# The folder layout (corpora, caches, run folders) is scripts/results.py's, so both reuse each other's runs.
RESULTS = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "results.py"))
OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Row:
    name: str
    head: str
    checks: dict = field(default_factory=dict)     # metric -> (op, value) on the mean over seeds
    above: tuple = ()                               # rows whose headline the row must beat
    args: tuple = ()
    dataset: str = "iemocap"
    protocol: str = "session"
    seeds: int = 3
    metric: str = "ua"                              # the headline, compared with `above`


def _ua(at_least):
    return {"ua": (">=", at_least)}


ABLATIONS = [Row("tsin-speech_only", "tsin", args=("--set", "ablation=speech_only")),
             Row("tsin-text_only", "tsin", args=("--set", "ablation=text_only")),
             Row("hff-speech_only", "hff", args=("--set", "modalities=s")),
             Row("hff-text_only", "hff", args=("--set", "modalities=t"))]
TABLE = [
    Row("tsin", "tsin", _ua(0.8), above=("tsin-speech_only", "tsin-text_only")),
    Row("hff", "hff", _ua(0.8), above=("hff-speech_only", "hff-text_only")),
    *[Row(head, head, _ua(0.8)) for head in ("harmofusion", "harmofusion_mg", "muse", "muse_mg")],
    *[Row(head, head, _ua(0.6)) for head in ("bert_mlp", "egemaps_mlp", "fbank_bilstm")],
    Row("emmanet", "emmanet", {"mf1_all": (">=", 0.8)}, dataset="affwild2", protocol="official",
        metric="mf1_all"),
    Row("hff-mosei", "hff", {"acc2": (">=", 0.85), "acc2_nonzero": (">=", 0.85), "acc7": (">=", 0.45),
                             "mae": ("<=", 0.6), "corr": (">=", 0.85)},
        args=("--set", "labelset=sentiment"), dataset="mosei", protocol="official", seeds=1, metric="mae"),
    Row("bert_mlp-meld", "bert_mlp", {"wf1": (">=", 0.8)}, args=("--set", "labelset=7class"), dataset="meld",
        protocol="official", seeds=1, metric="wf1"),
]
ROWS = {row.name: row for row in TABLE + ABLATIONS}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    kept = os.environ.get("EMOCACHE_ACCEPTANCE_DIR")
    return Path(kept) if kept else tmp_path_factory.mktemp("acceptance")


def _run(workdir, row) -> dict:
    """The row's results.json (trained now, or the folds kept from before)."""
    RESULTS["demo_root"](workdir, row.dataset)
    extract, train = RESULTS["commands"](row.name, asdict(row), workdir, row.seeds)
    assert pipeline(extract[1:]) == 0, f"{row.name}: {' '.join(extract[1:])} failed"
    rc = heads(train[1:])
    assert rc == 0, f"{row.name}: heads train exited {rc}"
    return json.loads((workdir / "runs" / row.name / "results.json").read_text())


@pytest.mark.acceptance
@pytest.mark.parametrize("row", TABLE, ids=lambda r: r.name)
def test_acceptance_row(workdir, row):
    result = _run(workdir, row)
    assert result["seeds"] == list(range(row.seeds)) and result["preset"] == "demo"
    assert all(check["ok"] for check in result["leakage_check"])
    if row.protocol == "session":
        assert len(result["protocol"]["folds"]) == 5 and result["classes"] == ["ang", "hap", "sad", "neu"]
    means = {metric: result["overall"][metric]["mean"] for metric in {*row.checks, row.metric}}
    failed = {m: f"{means[m]:.3f} (needs {op} {v})" for m, (op, v) in row.checks.items()
              if not OPS[op](means[m], v)}
    assert not failed, f"{row.name}: {failed}"
    for other in row.above:
        theirs = _run(workdir, ROWS[other])["overall"][row.metric]["mean"]
        assert means[row.metric] > theirs, \
            f"{row.name} {row.metric} {means[row.metric]:.3f} is not above {other}'s {theirs:.3f}"
