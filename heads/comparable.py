"""Whether a run can stand beside a paper's figure: the paper preset, no
changes but runtime ones, the paper's extractors (by name and by the
architecture the shards recorded), the paper's protocol and label set
(matched in report.matching_papers), and a corpus that is not a demo corpus.
Anything else gets one line, `not comparable to <paper>: <reasons>`."""
from __future__ import annotations

from dataclasses import asdict

# Stage options that cannot change what a stage computes.
RUNTIME_STAGE_OPTIONS = ("device", "threads", "workers", "batch_size", "batch_seconds")


def reasons(record) -> list:
    """Why `record` is not comparable to a paper's row (empty: it is)."""
    preset = record.get("preset")
    if preset != "paper":       # the preset's own changes are its business: one reason, not one per option
        out = [f"preset {preset}, not paper"]
    else:
        out = _head_changes(record) + [
            f"--set {stage}.{k}" for stage, opts in sorted((record.get("stage_overrides") or {}).items())
            for k in sorted(opts) if k not in RUNTIME_STAGE_OPTIONS]
    prov = record.get("provenance")
    if prov is None:
        return out + ["no provenance recorded (a run from an older version)"]
    if prov.get("demo_corpus"):
        out.append("a demo corpus")
    out += _extractor_problems(prov.get("stages", {}))
    return out


def _head_changes(record):
    from .head import RUNTIME_FIELDS
    from .models import load_all
    paper = asdict(load_all().get_or_fail(record["head"]).make_config("paper"))
    return [f"{k}={record['config'][k]!r} (paper: {paper[k]!r})" for k in sorted(paper)
            if k not in RUNTIME_FIELDS and k in record["config"] and _norm(record["config"][k]) != _norm(paper[k])]


def _norm(value):
    return list(value) if isinstance(value, tuple) else value


def _extractor_problems(stages) -> list:
    """The paper's extractors (manifests/presets.toml [paper.extractors]) by
    name and recorded architecture."""
    from pipeline.presets import packaged
    wanted = packaged("presets.toml").get("paper", {}).get("extractors", {})
    out = []
    for label, settings in sorted(stages.items()):
        want = wanted.get(settings["stage"])
        if not want:
            continue
        attrs = settings.get("attrs", {})
        model = settings["config"].get("model")
        if model not in want["names"]:
            out.append(f"{label} reads {model!r}, not {want['names'][0]}")
        for key, value in want.get("architecture", {}).items():
            if attrs.get(key) != value:
                out.append(f"{label}'s model has {key}={attrs.get(key)} (paper: {value})")
    return out
