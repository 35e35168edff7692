"""Per-item working state inside a task: loaded inputs and shared intermediates."""
from __future__ import annotations

from .stage import ItemError

_SHARED = {}   # per-process memo for item-independent values (filter banks...)


class ItemContext:
    """What a stage sees of one item. Contexts of different stages in one
    task share `memo`, so audio is decoded and an STFT computed once."""

    def __init__(self, item, memo, upstream=None):
        self.item = item
        self._memo = memo
        self._upstream = upstream or {}   # role -> callable returning (arrays, meta)

    def memo(self, key, compute, shared=False):
        table = _SHARED if shared else self._memo
        if key not in table:
            table[key] = compute()
        return table[key]

    def audio(self, sr, resample=True):
        from .audio import load_span
        if self.item.audio is None:
            raise ItemError("item has no audio")
        return self.memo(("audio", sr, resample), lambda: load_span(self.item.audio, sr, resample))

    def upstream(self, role):
        """The upstream stage's (arrays, meta) for this item."""
        return self.memo(("upstream", role), self._upstream[role])
