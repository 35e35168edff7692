"""Word vectors for the `words` stage's words: a GloVe-format text file when
one is given, else the text model's input embeddings.

`path=`: a text file of lines `word v1 v2 ... vd` (GloVe; an optional
word2vec-style first line `count dim` is skipped). The file is never loaded
whole: each worker streams it when a task brings words it has not looked up
yet and keeps only those words' vectors, so memory follows the corpus
vocabulary, not the file. The file's digest is part of the cache key.

No `path`: the fallback is the input embedding table of `model` (the `bert`
stage's default model): a word's vector is the mean of the embedding rows of
its sub-word tokens (the same pieces BERT sees), so heads that want word
vectors still run. Every shard records which was used (stage_attrs `source`).

Lookup order for a word: the word itself; for a hyphen or apostrophe word
missing from the file, the mean of its pieces (`co-operate` -> co, operate;
`didn't` -> did, n't, as GloVe's tokeniser splits it). A word with none of
these is out of vocabulary (OOV): it gets the `oov` vector — zeros, or the
mean of every vector in the file (`oov=mean`; each worker then parses the
whole file once) — and is flagged in the `oov`
array and counted in meta `n_oov`. With the fallback, a word is OOV when all
its tokens are the tokenizer's unknown token.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Optional

from ..stage import ConfigError, ItemError, Result, Seq, Stage
from ..digests import remembered_digest
from . import STAGES
from .bert import DEFAULT_MODEL, load_encoder, model_identity
from .words import word_times

_CHECK_LINES = 5   # lines read by validate() to check the format
FALLBACK = "no GloVe file (glove.path): word vectors are the text model's input embeddings, not GloVe"


@dataclass(frozen=True)
class Config:
    words: str = "words"
    path: Optional[str] = None      # GloVe-format text file; None: model input embeddings
    model: str = DEFAULT_MODEL      # fallback model (folder, HF cache name, packaged)
    oov: Literal["zeros", "mean"] = "zeros"
    dim: Optional[int] = None       # expected vector size (checked against the file)


def check_vector_file(path, want_dim=None) -> int:
    """The vector size of a GloVe-format file, or ConfigError saying what is wrong."""
    expected = "a GloVe text file: lines 'word v1 v2 ... vd' of decimal numbers"
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            if head == b"\x1f\x8b":
                raise ConfigError(f"glove: {path} is gzip-compressed; decompress it ({expected})")
            f.seek(0)
            lines = [f.readline() for _ in range(_CHECK_LINES + 1)]
    except OSError as e:
        raise ConfigError(f"glove: cannot read {path} ({e.strerror or e}); expected {expected}") from None
    lines = [ln for ln in lines if ln.strip()]
    if lines and _word2vec_header(lines[0]):
        lines = lines[1:]
    if not lines:
        raise ConfigError(f"glove: {path} holds no vectors; expected {expected}")
    dims = set()
    for number, raw in enumerate(lines[:_CHECK_LINES], start=1):
        try:
            fields = raw.decode("utf-8").rstrip().split(" ")
            [float(v) for v in fields[1:]]
        except (UnicodeDecodeError, ValueError):
            raise ConfigError(f"glove: {path} line {number} is not 'word' followed by numbers; "
                              f"expected {expected}") from None
        if len(fields) < 2:
            raise ConfigError(f"glove: {path} line {number} has no numbers; expected {expected}")
        dims.add(len(fields) - 1)
    if len(dims) != 1:
        raise ConfigError(f"glove: {path} lines have different vector sizes {sorted(dims)}; "
                          f"expected {expected}")
    dim = dims.pop()
    if want_dim is not None and dim != want_dim:
        raise ConfigError(f"glove: {path} has {dim}-d vectors but dim={want_dim} was asked for")
    return dim


def _word2vec_header(raw):
    parts = raw.split()
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def pieces(word):
    """How GloVe's tokeniser would split a hyphen/apostrophe word, or ()."""
    if "-" in word:
        return tuple(p for p in word.split("-") if p)
    if word.endswith("n't") and len(word) > 3:
        return word[:-3], "n't"
    if "'" in word:
        head, _, tail = word.partition("'")
        return tuple(p for p in (head, "'" + tail) if p != "'")
    return ()


class FileVectors:
    """Vectors of a GloVe file, read on demand for the words asked for."""

    def __init__(self, path, dim, oov):
        self.path, self.dim, self.oov_kind = path, dim, oov
        self.found, self.absent = {}, set()
        self._mean = None

    def ensure(self, words):
        """Stream the file once for every word not looked up before."""
        import numpy as np
        wanted = {w for w in words if w not in self.found and w not in self.absent}
        wanted |= {p for w in wanted for p in pieces(w)}
        wanted -= self.found.keys() | self.absent
        need_mean = self.oov_kind == "mean" and self._mean is None
        if not wanted and not need_mean:
            return
        keys = {w.encode("utf-8") for w in wanted}
        total, n = np.zeros(self.dim), 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                word, _, rest = line.partition(b" ")
                if number == 1 and _word2vec_header(line):
                    continue
                if word in keys or need_mean:
                    vec = np.array(rest.split(), dtype=np.float32)
                    if vec.shape != (self.dim,):
                        raise ItemError(f"{self.path} line {number}: {vec.shape[0]} numbers, "
                                        f"expected {self.dim}")
                    if word in keys:
                        self.found.setdefault(word.decode("utf-8"), vec)
                    if need_mean:
                        total += vec
                        n += 1
        self.absent |= wanted - self.found.keys()
        if need_mean:
            self._mean = (total / max(n, 1)).astype(np.float32)

    def vector(self, word):
        """(vector, is_oov)."""
        import numpy as np
        if word in self.found:
            return self.found[word], False
        parts = [self.found[p] for p in pieces(word) if p in self.found]
        if parts:
            return np.mean(parts, axis=0).astype(np.float32), False
        return self.oov_vector(), True

    def oov_vector(self):
        import numpy as np
        return self._mean if self.oov_kind == "mean" else np.zeros(self.dim, np.float32)


class EmbeddingVectors:
    """The fallback: a text model's input embeddings, mean over a word's tokens."""

    def __init__(self, model, oov):
        tokenizer, net, _ = load_encoder(model, device="cpu", threads=0)
        self.tokenizer = tokenizer
        self.table = net.get_input_embeddings().weight.detach().float().cpu().numpy()
        self.dim = self.table.shape[1]
        self.oov_kind = oov
        self.unk = tokenizer.unk_token_id
        del net   # only the table is kept

    def ensure(self, words):
        pass

    def vector(self, word):
        ids = [i for i in self.tokenizer(word, add_special_tokens=False)["input_ids"] if i != self.unk]
        if not ids:
            return self.oov_vector(), True
        return self.table[ids].mean(axis=0), False

    def oov_vector(self):
        import numpy as np
        return self.table.mean(axis=0) if self.oov_kind == "mean" else np.zeros(self.dim, np.float32)


@STAGES.register()
class Glove(Stage):
    name = "glove"
    version = "1"
    Config = Config
    consumes = {"words": "words"}
    batch_items = 2048     # a file stream per task with new words: big tasks, few streams
    batched = True
    location_options = ("path", "model")    # identity() holds the file's / model's digest

    def validate(self):
        cfg = self.config
        if cfg.path is not None:
            check_vector_file(cfg.path, cfg.dim)
            self.identity()
        else:
            model_identity(cfg.model)

    def identity(self):
        cfg = self.config
        if cfg.path is None:
            return {"source": "model-input-embeddings", "fallback": FALLBACK, **model_identity(cfg.model)}
        try:
            digest = remembered_digest(cfg.path)
        except OSError as e:
            raise ConfigError(f"glove: cannot read {cfg.path} ({e.strerror or e})") from None
        return {"source": "glove-file", "digest": digest}

    def notes(self):
        return [f"{FALLBACK} ({self.config.model})"] if self.config.path is None else []

    def shard_attrs(self):
        cfg = self.config
        if cfg.path is None:
            return {"source": "model-input-embeddings", "model": cfg.model, "oov": cfg.oov}
        return {"source": "glove-file", "path": os.path.abspath(cfg.path), "oov": cfg.oov,
                "dim": check_vector_file(cfg.path, cfg.dim)}

    def setup(self):
        cfg = self.config
        if cfg.path is None:
            return {"vectors": EmbeddingVectors(cfg.model, cfg.oov)}
        return {"vectors": FileVectors(cfg.path, check_vector_file(cfg.path, cfg.dim), cfg.oov)}

    def compute_batch(self, ctxs):
        ups = []
        for ctx in ctxs:
            try:
                ups.append(ctx.upstream("words"))
            except ItemError as e:
                ups.append(e)
        vectors = self.resources["vectors"]
        try:
            vectors.ensure({str(w) for u in ups if not isinstance(u, Exception) for w in u[0]["words"]})
        except ItemError as e:   # a bad line deep in the file: every item of the task
            return [e] * len(ctxs)
        return [u if isinstance(u, Exception) else self._result(vectors, *u) for u in ups]

    def _result(self, vectors, arrays, meta):
        import numpy as np
        rows, oov = [], []
        for word in map(str, arrays["words"]):
            vec, missing = vectors.vector(word)
            rows.append(vec)
            oov.append(missing)
        times = word_times(arrays["spans"])
        data = np.stack(rows).astype(np.float32) if rows else np.zeros((0, vectors.dim), np.float32)
        source = "glove-file" if self.config.path else "model-input-embeddings"
        return Result({"vectors": Seq(data, times=times), "oov": Seq(np.array(oov, dtype=bool), times=times)},
                      {"n_words": len(rows), "n_oov": int(sum(oov)), "source": source,
                       "empty": meta.get("empty")})
