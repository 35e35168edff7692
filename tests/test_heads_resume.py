"""`heads train` resumes: killed (SIGKILL) during fold 3 of 5 and started again
with the same command, it keeps folds 1-2, continues fold 3 from its last
epoch and ends with the metrics of an uninterrupted run; metrics.csv grows
per epoch; mixed precision; checkpoints are data and a poisoned one is
refused without running what it carries."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from heads_fake import fake_items, write_fake_cache

from heads.cli import main

HEADS = str(Path(sys.executable).with_name("heads"))
EPOCHS = 30


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume_cache")
    return write_fake_cache(d, fake_items(sessions=5, per_speaker=4), {"fbank@tsin": {"fbank": ("seq", 6)},
                                                                     "mfcc": {"mfcc": ("seq", 4)}})


def _args(cache, out, *extra):
    return ["train", "--model", "tsin", "--cache", str(cache), "--preset", "demo", "--set", "text_stage=mfcc",
            "--set", "text_array=mfcc", "--set", f"epochs={EPOCHS}", "--set", "dropout=0.3",
            "--protocol", "session", "--dev", "next-session", "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def clean(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "run"
    assert main(_args(cache, out)) == 0
    return out


def _results(run):
    return json.loads((Path(run) / "results.json").read_text())


def _epochs(csv_path):
    lines = csv_path.read_text().splitlines()
    return [int(line.split(",")[0]) for line in lines[1:]]


def test_metrics_csv_has_one_row_per_epoch(clean):
    for fold in range(1, 6):
        csv_path = clean / "folds" / f"seed0_fold{fold}" / "metrics.csv"
        header = csv_path.read_text().splitlines()[0].split(",")
        assert header == ["epoch", "lr", "train_loss", "train_wa", "dev_loss", "dev_wa", "dev_ua", "dev_wf1",
                          "dev_mf1", "dev_mf1_all", "seconds", "data_seconds"]
        assert _epochs(csv_path) == list(range(1, EPOCHS + 1))
        assert not (clean / "folds" / f"seed0_fold{fold}" / "last.pt").exists()   # a finished fold keeps its record


def test_sigkill_during_fold_3_then_resume(cache, clean, tmp_path, capsys):
    out = tmp_path / "run"
    fold3 = out / "folds" / "seed0_fold3"
    proc = subprocess.Popen([HEADS, *_args(cache, out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (fold3 / "metrics.csv").exists() and len(_epochs(fold3 / "metrics.csv")) >= 3:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert (fold3 / "last.pt").exists() and not (fold3 / "run.json").exists()   # killed inside fold 3
    assert not (out / "results.json").exists()
    kept = {f: (out / "folds" / f"seed0_fold{f}" / "run.json").stat().st_mtime_ns for f in (1, 2)}
    ckpts = {f: (out / "checkpoints" / f"seed0_fold{f}.pt").stat().st_mtime_ns for f in (1, 2)}

    assert main(_args(cache, out)) == 0
    printed = capsys.readouterr().out
    assert "session=1: trained and tested before" in printed and "session=2: trained and tested before" in printed
    assert "session=3: test" in printed
    for f in (1, 2):        # not retrained
        assert (out / "folds" / f"seed0_fold{f}" / "run.json").stat().st_mtime_ns == kept[f]
        assert (out / "checkpoints" / f"seed0_fold{f}.pt").stat().st_mtime_ns == ckpts[f]
    assert _epochs(fold3 / "metrics.csv") == list(range(1, EPOCHS + 1))    # continued, no epoch twice
    resumed, reference = _results(out), _results(clean)
    assert resumed["overall"] == reference["overall"]
    for a, b in zip(resumed["runs"], reference["runs"]):
        assert a["metrics"] == b["metrics"] and a["predictions"] == b["predictions"]
        assert a["kept_epoch"] == b["kept_epoch"]
        assert a["history"] == b["history"]


def test_another_experiment_in_the_same_folder_is_refused(cache, clean, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    assert main(_args(cache, out, "--set", "lr=0.01")) == 2
    assert "holds a run of other options" in capsys.readouterr().err


def test_bf16_trains(cache, tmp_path):
    out = tmp_path / "run"
    args = _args(cache, out, "--precision", "bf16")
    args[args.index(f"epochs={EPOCHS}")] = "epochs=2"
    assert main(args) == 0
    r = _results(out)
    assert r["precision"] == "bf16" and len(r["runs"]) == 5
    assert all(len(run["history"]) == 2 for run in r["runs"])


def test_fp16_needs_cuda(cache, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(_args(cache, tmp_path / "run", "--precision", "fp16")) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err and not (tmp_path / "run").exists()


class _Payload:
    """Pickles as a call to open(marker, "w"): loading it unsafely creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_poisoned_checkpoint_is_refused_and_never_runs(cache, clean, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(clean, run)
    assert main(["evaluate", str(run), "--cache", str(cache)]) == 0      # a clean run folder evaluates
    capsys.readouterr()
    marker = tmp_path / "payload-ran"
    ckpt = run / "checkpoints" / "seed0_fold2.pt"
    good = torch.load(ckpt, weights_only=True)
    torch.save({**good, "state_dict": _Payload(marker)}, ckpt)
    assert main(["evaluate", str(run), "--cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert f"{ckpt}: refused" in err and "could run code" in err
    assert not marker.exists()
    # Checkpoints hold tensors and JSON-able metadata only.
    meta = {k: v for k, v in good.items() if k != "state_dict"}
    assert json.loads(json.dumps(meta)) == meta
    assert all(torch.is_tensor(t) for t in good["state_dict"].values())


def test_poisoned_epoch_state_is_refused(cache, clean, tmp_path, capsys):
    """A resumed fold loads its last.pt the same way."""
    run = tmp_path / "run"
    shutil.copytree(clean, run)
    fold = run / "folds" / "seed0_fold5"
    (fold / "run.json").unlink()
    marker = tmp_path / "payload-ran"
    torch.save({"progress": _Payload(marker)}, fold / "last.pt")
    assert main(_args(cache, run)) == 2
    assert "last.pt: refused" in capsys.readouterr().err and not marker.exists()
