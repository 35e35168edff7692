"""Finding a Hugging Face model on this machine, and naming it by content.

A model is given as a folder or as a hub id (`microsoft/wavlm-base-plus`,
optionally `id@revision`). An id is looked up only in the user's local
Hugging Face cache, through huggingface_hub's own lookup with
`local_files_only` (so `HF_HOME` / `HF_HUB_CACHE` and revisions are
respected); nothing is ever downloaded. When the model is not there, a
ConfigError (exit status 2, before any work) names it and the ways to
provide it.

A model enters cache keys by the digest of the files that decide its
output (weights, config, preprocessing, tokenizer), never by its path, so
moving the folder recomputes nothing. File digests are remembered against
size and mtime (pipeline.digests.remembered_digest).
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache

from .stage import ConfigError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")
# Files besides the weights whose content can change a model's output.
IDENTITY_FILES = ("config.json", "preprocessor_config.json", "feature_extractor_config.json",
                  "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                  "special_tokens_map.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


def how_to_provide(model: str, who: str) -> str:
    """The ways to make `model` available, for error messages."""
    return (f"give a local folder with --set {who}.model=/path/to/model, or put it in the Hugging Face "
            f"cache on a machine with network (`hf download {model}`, or "
            f"`from_pretrained('{model}')` once) and copy the cache here (HF_HOME={_hf_home()})")


def _hf_home():
    return os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))


@lru_cache(maxsize=None)
def find_model(model: str, who: str = "model") -> str:
    """The local folder of `model` (a path, or a hub id in the local HF cache),
    checked to hold a readable config.json and a weight file."""
    if not model:
        raise ConfigError(f"{who}: no model given; {how_to_provide('microsoft/wavlm-base-plus', who)}")
    if os.path.isdir(model):
        path = os.path.abspath(model)
    elif os.path.exists(model) or model.startswith((".", "/", "~")):
        raise ConfigError(f"{who}: model {model!r} is not a folder (a model is a folder with "
                          "config.json and weights, or a Hugging Face id)")
    else:
        path = _from_hf_cache(model, who)
    _check_folder(model, path, who)
    return path


def _from_hf_cache(model, who):
    from huggingface_hub import snapshot_download
    repo_id, _, revision = model.partition("@")
    try:
        return snapshot_download(repo_id, revision=revision or None, local_files_only=True)
    except Exception as e:   # not cached, bad id, revision unknown: all mean "not here"
        raise ConfigError(f"{who}: model {model!r} is not a folder and not in the local Hugging Face "
                          f"cache ({type(e).__name__}); no download is attempted. "
                          f"{how_to_provide(repo_id, who)}") from None


def _check_folder(model, path, who):
    config = os.path.join(path, "config.json")
    try:
        with open(config, encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{who}: model {model!r}: {config} is missing or unreadable ({e}); "
                          "expected a Hugging Face model folder with config.json") from None
    if not any(name.endswith(WEIGHT_SUFFIXES) for name in os.listdir(path)):
        raise ConfigError(f"{who}: model {model!r}: no weight file in {path} "
                          "(expected model.safetensors or pytorch_model.bin)")


@lru_cache(maxsize=None)
def model_config(model: str, who: str = "model") -> dict:
    with open(os.path.join(find_model(model, who), "config.json"), encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=None)
def model_digest(model: str, who: str = "model") -> str:
    """Digest of the files that decide the model's output, by name and content
    (not by where the folder is)."""
    return folder_digest(find_model(model, who), who)


def folder_digest(path: str, who: str = "model") -> str:
    """model_digest of the model folder `path`, computed now (file digests are remembered)."""
    from .digests import remembered_digest
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full) and (name.endswith(WEIGHT_SUFFIXES) or name in IDENTITY_FILES):
            try:
                h.update(f"{name}={remembered_digest(full)};".encode())
            except OSError as e:
                raise ConfigError(f"{who}: model {path!r}: cannot read {full} ({e})") from None
    return h.hexdigest()
