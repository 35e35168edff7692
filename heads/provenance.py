"""What a run was made with, for results.json: the code (package version, git
commit), the libraries, the resolved settings of every stage the run read
(each model's name, architecture and content digest, as the shards recorded
them), the corpus (a demo corpus is marked) and the device."""
from __future__ import annotations

import subprocess
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "librosa", "opensmile", "mediapipe")


def provenance(cache, dataset, labels, stages, device) -> dict:
    """`labels`: the stage specs the head reads; those they consume are recorded too."""
    from pipeline.graph import resolve
    return {"emocache": _version("emocache"), "git_commit": git_commit(),
            "libraries": {name: _version(name) for name in LIBRARIES},
            "stages": {s.label: stage_settings(cache, dataset, s.label, stages) for s in resolve(labels, stages)},
            "demo_corpus": bool(cache.datasets()[dataset].get("options", {}).get("demo")),
            "device": str(device)}


def stage_settings(cache, dataset, label, stages) -> dict:
    """A stage spec's options, cache-key identity and the facts its shards
    recorded (for a model: name, type, width, layers, digest)."""
    spec = cache.spec(label, stages)
    return {"stage": spec.name, "version": spec.stage.version, "config": asdict(spec.stage.config),
            "identity": spec.stage.identity(), "config_id": spec.config_id,
            "attrs": cache.stage_attrs(label, dataset, stages)}


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit():
    """The commit of the checkout the code runs from (None when not a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None
