"""The wheel works outside the source tree, and importing the package changes nothing process-wide."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(args, cwd, env):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_wheel_holds_the_manifests_and_runs_outside_the_tree(tmp_path):
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
          "-w", str(tmp_path / "wheel")], ROOT, os.environ)
    wheel = next((tmp_path / "wheel").glob("emocache-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"manifests/{p.name}" for p in (ROOT / "manifests").glob("*.toml")} <= names
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
         tmp_path, os.environ)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listing = "from pipeline.cli import main; main(['list'])"
    installed = _run([sys.executable, "-c", listing], elsewhere, {**os.environ, "PYTHONPATH": str(target)})
    source = _run([sys.executable, "-c", listing], ROOT, {**os.environ, "PYTHONPATH": str(ROOT)})
    lists = installed[installed.index("named configurations"):]
    assert "fbank@tsin" in lists.splitlines()[0] and "  tsin paper: fbank@tsin, bert@tsin" in lists
    assert lists == source[source.index("named configurations"):]      # the same manifests, installed or not
    where = _run([sys.executable, "-c", "import pipeline, manifests; print(pipeline.__file__, manifests.__file__)"],
                 elsewhere, {**os.environ, "PYTHONPATH": str(target)})
    assert all(path.startswith(str(target)) for path in where.split())


def test_import_changes_no_environment_variable():
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NUMBA_CACHE_DIR")}
    script = ("import os, json; before = dict(os.environ); import pipeline, pipeline.api, heads.cli, "
              "pipeline.cli; print(json.dumps(dict(os.environ) == before))")
    assert _run([sys.executable, "-c", script], ROOT, env).strip() == "true"
