"""The transcript's word sequence (pipeline/text.py rules), with word times
where the corpus has an alignment (IEMOCAP `.wdseg`).

Arrays: `words` (N,) strings, lower-case; `spans` (N, 2) float32 start/end
seconds in the item's audio, nan for a word the aligner dropped or when the
corpus has no times. Both carry the word start times as their timeline.
Meta: `n_words`, `timed` (words with a time), `aligner_extra` (aligner words
no transcript word took), `dropped_chars` (non-ASCII letters dropped),
`empty` (why there are no words, else null).
"""
from dataclasses import dataclass

from ..stage import Result, Seq, Stage
from ..text import empty_reason, item_text, match_times, segment
from . import STAGES


@dataclass(frozen=True)
class Config:
    times: bool = True        # attach the corpus's word times when it has them


def word_times(spans):
    """The timeline of per-word arrays: each word's start (nan when untimed)."""
    return spans[:, 0].astype("float64")


@STAGES.register()
class Words(Stage):
    name = "words"
    version = "1"
    Config = Config
    reads = ("text", "words")
    batch_items = 512
    default_on = False

    def compute(self, ctx):
        import numpy as np
        item = ctx.item
        text = item_text(item, "raw")
        seg = segment(text)
        spans = np.full((len(seg.words), 2), np.nan, dtype=np.float32)
        meta = {"n_words": len(seg.words), "timed": 0, "aligner_extra": 0,
                "dropped_chars": seg.dropped, "empty": empty_reason(text, seg)}
        if self.config.times and item.words and seg.words:
            m = match_times(seg.words, [(w.word, w.start, w.end) for w in item.words])
            spans[:, 0], spans[:, 1] = m.start, m.end
            meta["timed"] = int(np.isfinite(spans[:, 0]).sum())
            meta["aligner_extra"] = m.extra
        times = word_times(spans)
        words = np.array(seg.words, dtype=str) if seg.words else np.zeros(0, dtype="<U1")
        return Result({"words": Seq(words, times=times), "spans": Seq(spans, times=times)}, meta)
