"""Checkpoints that stay data: tensors plus JSON-able metadata.

A checkpoint is a dict of tensors (state dicts) and plain values (numbers,
strings, lists, dicts), written with `torch.save` under a temporary name and
renamed when whole, and read back only with `torch.load(weights_only=True)`:
that unpickler builds tensors and plain containers and nothing else, so a
file that would run code when loaded is refused instead (`UnsafeCheckpoint`).

The random number generators' states (Python, NumPy, torch, CUDA) are kept
the same way, as tensors and lists, so a training run can continue from an
epoch checkpoint exactly where it stopped.
"""
from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch


class UnsafeCheckpoint(ValueError):
    """A checkpoint that cannot be read as tensors and plain metadata."""


def plain(meta: dict) -> dict:
    """`meta` as JSON would give it back (tuples become lists); raises
    TypeError for anything JSON cannot hold, so no object ends in a checkpoint."""
    return json.loads(json.dumps(meta))


def save(path, tensors: dict, meta: dict):
    """Write tensors (state dicts: names -> tensors, optimiser states) and
    JSON-able metadata as one checkpoint file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**plain(meta), **tensors}, tmp)
    os.replace(tmp, path)


def load(path, device="cpu") -> dict:
    """The checkpoint at `path`, read with `weights_only=True`; refuses a
    file that holds anything else (a pickled object runs code on load)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpoint(f"{path}: refused: it holds more than tensors and plain metadata "
                               f"(loading it could run code it carries): {reason}") from None
    except (RuntimeError, EOFError) as e:
        raise UnsafeCheckpoint(f"{path}: not a readable checkpoint: {e}") from None


def rng_states() -> tuple:
    """(tensors, JSON-able) states of every random number generator training uses."""
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"rng_torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng_cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    meta = {"rng_python": [version, list(state), gauss],
            "rng_numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]}
    return tensors, meta


def set_rng_states(ckpt: dict):
    """Put back the states `rng_states` saved (CUDA's only where CUDA is present)."""
    version, state, gauss = ckpt["rng_python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = ckpt["rng_numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(ckpt["rng_torch"].cpu())
    if "rng_cuda" in ckpt and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng_cuda"]])
