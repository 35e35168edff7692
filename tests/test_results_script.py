"""scripts/results.py write: the results table from snapshots, each figure with its commands."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "results.py"


def _snapshot(path, label, commit, runs):
    path.write_text(json.dumps({"label": label, "commit": commit, "runs": runs}))
    return str(path)


def _run(name, per_seed, metric="ua"):
    return {"head": name, "preset": "demo", "dataset": "iemocap", "protocol": "session", "metric": metric,
            "per_seed": per_seed, "mean": sum(per_seed.values()) / len(per_seed), "train_seconds": 1.0,
            "commands": [f"heads train --model {name} --preset demo --out $OUT/runs/{name}"]}


def test_write_puts_seed_zero_of_each_snapshot_and_the_last_ones_mean_beside_the_commands(tmp_path, capsys,
                                                                                           monkeypatch):
    before = _snapshot(tmp_path / "b.json", "before", "aaa1111", {"tsin": _run("tsin", {"0": 0.9})})
    after = _snapshot(tmp_path / "a.json", "after", "bbb2222",
                      {"tsin": _run("tsin", {"0": 0.8, "1": 0.7, "2": 0.6}),
                       "emmanet": _run("emmanet", {"0": 0.85}, "mf1_all")})
    notes = tmp_path / "notes.md"
    notes.write_text("TSIN moved because of X.")
    monkeypatch.setattr(sys, "argv", ["results.py", "write", before, after, "--notes", str(notes)])
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "| tsin | UA | 0.900 | 0.800 | 0.700 (3 seeds) |" in out
    assert "| emmanet | mean F1 (8 classes) | — | 0.850 | 0.850 (1 seed) |" in out
    assert "before (aaa1111), seed 0" in out and "TSIN moved because of X." in out
    assert "`heads train --model tsin --preset demo --out $OUT/runs/tsin`" in out
