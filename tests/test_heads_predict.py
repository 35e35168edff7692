"""`heads predict`: a run trained on the demo corpus applied to a table of
new recordings. Five wavs, one of them truncated: five rows, four with
class probabilities averaged over every fold model, one with the reason."""
import csv
import json
import shutil

import numpy as np
import pytest

from heads.cli import main as heads
from helpers import extract, train_run


@pytest.fixture(scope="module")
def run(demo_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("predict")
    # a stage option set at training (40 bands): predict must extract with it too
    assert extract(demo_root, base / "cache", "--stages", "fbank@tsin", "--set", "fbank@tsin.n_mels=40",
                   dataset="iemocap") == 0
    train_run(base / "cache", base / "run", "fbank_bilstm", "--set", "epochs=1", "--set", "fbank@tsin.n_mels=40")
    return base / "run"


@pytest.fixture
def new_table(demo_root, tmp_path):
    wavs = sorted(demo_root.glob("Session*/sentences/wav/*/*.wav"))[:5]
    lines = ["id,audio"]
    for n, wav in enumerate(wavs):
        shutil.copy(wav, tmp_path / f"new{n}.wav")
        lines.append(f"new{n},new{n}.wav")
    data = (tmp_path / "new2.wav").read_bytes()
    (tmp_path / "new2.wav").write_bytes(data[:len(data) // 2])      # cut short: the header says more
    (tmp_path / "new.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "new.csv"


def test_predict_writes_a_row_per_item(run, new_table, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    rc = heads(["predict", str(run), "--dataset", "table", "--root", str(new_table), "--cache",
                str(tmp_path / "cache"), "--out", str(out), "--scheduler", "sync", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "4 of 5 item(s) predicted" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == [f"new{n}" for n in range(5)]
    record = json.loads((run / "results.json").read_text())
    classes = record["classes"]
    models = ";".join(f"seed{r['seed']}/{r['fold']}" for r in record["runs"])
    for row in rows:
        if row["id"] == "new2":
            assert "truncated" in row["error"] or "incomplete" in row["error"], row
            assert row["prediction"] == "" and row["models"] == ""
            continue
        probs = np.array([float(row[f"p_{c}"]) for c in classes])
        assert abs(probs.sum() - 1) < 1e-3 and row["prediction"] == classes[int(probs.argmax())]
        assert row["models"] == models and row["error"] == ""
    # the same configurations as the run: fbank@tsin's configuration id
    from pipeline.api import Cache
    status = Cache(tmp_path / "cache").status("fbank@tsin", "table", {"fbank@tsin": {"n_mels": 40}})
    assert status["spec"].config_id == record["features"]["fbank@tsin"]["config_id"]
    assert len(status["current"]) == 4 and list(status["failed"]) == ["new2"]


def test_predict_refuses_a_changed_configuration(run, new_table, tmp_path, capsys):
    record = json.loads((run / "results.json").read_text())
    record["features"]["fbank@tsin"]["config_id"] = "0" * 16
    other = tmp_path / "run"
    shutil.copytree(run, other)
    (other / "results.json").write_text(json.dumps(record))
    rc = heads(["predict", str(other), "--dataset", "table", "--root", str(new_table), "--cache",
                str(tmp_path / "cache"), "--scheduler", "sync"])
    assert rc == 2
    assert "fbank@tsin now resolves to configuration" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()            # refused before any work
