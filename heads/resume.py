"""What a run folder keeps while training, so a killed `heads train` goes on.

    <out>/experiment.json              what is trained: head, options, folds, features
    <out>/folds/seed0_fold1/metrics.csv  one row per epoch, written as training goes
    <out>/folds/seed0_fold1/last.pt      the state after the last finished epoch
    <out>/folds/seed0_fold1/run.json     the fold's record, once it is tested

Started again with the same command and `--out`, training skips the folds
that have a record and continues an unfinished fold from its `last.pt`.
A folder holding another experiment is refused rather than mixed in.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

EXPERIMENT = "experiment.json"


class OtherExperiment(ValueError):
    """The run folder already holds (part of) a run of something else."""


def claim(out_dir: Path, experiment: dict):
    """Record what `out_dir` trains, or check it is what it held before."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / EXPERIMENT
    digest = hashlib.blake2b(json.dumps(experiment, sort_keys=True).encode(), digest_size=16).hexdigest()
    if path.exists():
        before = json.loads(path.read_text()).get("digest")
        if before != digest:
            raise OtherExperiment(f"--out {out_dir} holds a run of other options, folds or features; "
                                  "give another --out (or remove that folder) to start afresh")
        return
    _write_json(path, {"digest": digest, **experiment})


def _write_json(path: Path, value):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class FoldLog:
    """The files of one (seed, fold) of a run."""

    def __init__(self, out_dir: Path, seed: int, fold_number: int):
        self.dir = Path(out_dir) / "folds" / f"seed{seed}_fold{fold_number}"
        self.state = self.dir / "last.pt"
        self.metrics = self.dir / "metrics.csv"
        self.record = self.dir / "run.json"

    def finished(self):
        """The fold's record when it was trained and tested before, else None."""
        return json.loads(self.record.read_text()) if self.record.exists() else None

    def finish(self, record: dict):
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.record, record)
        self.state.unlink(missing_ok=True)      # the tested record supersedes it

    def start(self, history: list):
        """metrics.csv as far as the resumed state goes (rows written after
        the last saved state are dropped: those epochs run again)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics.unlink(missing_ok=True)
        for row in history:
            self.add_row(row)

    def add_row(self, row: dict):
        new = not self.metrics.exists()
        with open(self.metrics, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
