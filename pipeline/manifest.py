"""The Item record and manifest files.

A manifest is JSON Lines, one Item per line with sorted keys, in corpus order,
so two manifests of the same corpus diff line by line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Media:
    """A media file and the part of it that belongs to the item.

    `start`/`end` are seconds into the file (None: from the start / to the
    end). `region` names a part of the picture (`left`, `right`) for videos
    that show more than one person.
    """
    path: str
    start: Optional[float] = None
    end: Optional[float] = None
    region: Optional[str] = None


@dataclass(frozen=True)
class Word:
    """A transcript word with its time in the item's audio (seconds)."""
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Item:
    id: str
    corpus: str
    audio: Optional[Media] = None
    video: Optional[Media] = None
    text: Optional[str] = None          # the transcript as the corpus has it
    text_clean: Optional[str] = None    # without bracketed tokens such as [LAUGHTER]
    words: Optional[tuple] = None       # tuple[Word] when the corpus gives word times
    speaker: Optional[str] = None
    session: Optional[str] = None
    labels: dict = field(default_factory=dict)   # categorical / dimensional / per-frame
    split: Optional[str] = None         # official split tag, when the corpus has one
    extra: dict = field(default_factory=dict)    # corpus-specific facts (dialog, gender...)
    warnings: tuple = ()                # reader problems that did not stop the item

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    def to_dict(self) -> dict:
        """Plain data without the empty fields. Written out by hand because
        dataclasses.asdict deep-copies every value, which made serialising
        a 10,000-item manifest the slowest part of a no-op rerun."""
        d = _drop_empty(dict(vars(self)))
        for key in ("audio", "video"):
            if key in d:
                d[key] = _drop_empty(dict(vars(d[key])))
        if "words" in d:
            d["words"] = [dict(vars(w)) for w in d["words"]]
        for key in ("labels", "extra"):
            if key in d:
                d[key] = json.loads(json.dumps(d[key]))   # a copy, as plain JSON types
        if "warnings" in d:
            d["warnings"] = list(d["warnings"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Item":
        d = dict(d)
        for key in ("audio", "video"):
            if d.get(key) is not None:
                d[key] = Media(**d[key])
        if d.get("words") is not None:
            d["words"] = tuple(Word(**w) for w in d["words"])
        if "warnings" in d:
            d["warnings"] = tuple(d["warnings"])
        return cls(**d)


def _drop_empty(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != {} and v != ()}


def read_manifest(path) -> list:
    with open(path, encoding="utf-8") as f:
        return [Item.from_dict(json.loads(line)) for line in f if line.strip()]
