"""Named stage configurations and per-head stage lists, read from manifests/*.toml.

A file declares named configurations as tables `[stage.<stage>.<name>]`
(giving `<stage>@<name>`) and, optionally, `extract = ["fbank@tsin", ...]`:
the stages `pipeline extract --for <file stem>` extracts.
"""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"


@lru_cache(maxsize=None)
def named_configs() -> dict:
    """'stage@name' -> (stage, overrides dict, source file)."""
    out = {}
    for path in sorted(MANIFESTS.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        for stage, table in data.get("stage", {}).items():
            for name, overrides in table.items():
                label = f"{stage}@{name}"
                if label in out:
                    raise ValueError(f"{label} is declared twice ({out[label][2]} and {path.name})")
                out[label] = (stage, overrides, path.name)
    return out


@lru_cache(maxsize=None)
def head_stage_lists() -> dict:
    """file stem -> list of stage specs it needs (`extract = [...]`)."""
    out = {}
    for path in sorted(MANIFESTS.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        if "extract" in data:
            out[path.stem] = list(data["extract"])
    return out
