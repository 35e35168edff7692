"""ImageNet CNN backbones for the image-based stages (deepspectrum, face, frames).

One policy for where weights come from, shared by every stage that embeds
images with a torchvision CNN:

- `weights="imagenet"` (or a torchvision weights name such as "IMAGENET1K_V2"):
  the file torchvision itself would download, read from its cache
  (`torch.hub.get_dir()/checkpoints/<file>`) or from a user `weights_path`.
  Nothing is ever downloaded: these machines have no network at run time.
- `weights="random"` with a `seed`: a randomly initialised network that
  every worker rebuilds identically (useful for tests and machines without
  the ImageNet files).

API:
    check_weights(arch, weights, weights_path, seed, who)   -> None or ConfigError (for validate())
    weights_identity(arch, weights, weights_path, seed)     -> dict for Stage.identity()
    load_backbone(arch, weights, weights_path, seed, device) -> (model, out_dim)
    imagenet_normalise(batch)                                -> normalised float tensor
    pick_device(prefer=None)                                 -> "cuda" or "cpu"
    embed_batches(model, images, device, batch_size)         -> (N, out_dim) float32 numpy

This module imports torch only inside functions: validate() and identity()
run on every (also no-op) run and must stay cheap.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class CnnOptions:
    """Backbone and weights options of the stages that embed images with a CNN."""
    arch: str = "resnet18"
    weights: str = "imagenet"           # imagenet, a torchvision weights name, or random
    weights_path: Optional[str] = None
    seed: Optional[int] = None          # for weights=random
    batch_size: int = 32
    device: Optional[str] = None        # None: cuda when present
    threads: int = 1                    # torch threads per worker

from .stage import ConfigError

RANDOM = "random"
IMAGENET = "imagenet"          # alias of each architecture's IMAGENET1K_V1 weights
_URL_BASE = "https://download.pytorch.org/models/"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Arch:
    dim: int                                    # width of the pooled feature vector
    files: dict = field(default_factory=dict)   # torchvision weights name -> file name
    head: str = "fc"                            # classifier attribute replaced by Identity


# File names are torchvision's own (`<weights enum>.url`), written out here so
# that validate() can name the expected file without importing torchvision;
# tests/test_stage_deepspectrum.py checks the table against torchvision.
ARCHES = {
    "densenet121": Arch(1024, {"IMAGENET1K_V1": "densenet121-a639ec97.pth"}, "classifier"),
    "densenet161": Arch(2208, {"IMAGENET1K_V1": "densenet161-8d451a50.pth"}, "classifier"),
    "densenet169": Arch(1664, {"IMAGENET1K_V1": "densenet169-b2777c0a.pth"}, "classifier"),
    "densenet201": Arch(1920, {"IMAGENET1K_V1": "densenet201-c1103571.pth"}, "classifier"),
    "resnet18": Arch(512, {"IMAGENET1K_V1": "resnet18-f37072fd.pth"}),
    "resnet34": Arch(512, {"IMAGENET1K_V1": "resnet34-b627a593.pth"}),
    "resnet50": Arch(2048, {"IMAGENET1K_V1": "resnet50-0676ba61.pth",
                            "IMAGENET1K_V2": "resnet50-11ad3fa6.pth"}),
    "resnet101": Arch(2048, {"IMAGENET1K_V1": "resnet101-63fe2227.pth",
                             "IMAGENET1K_V2": "resnet101-cd907fc2.pth"}),
    "resnet152": Arch(2048, {"IMAGENET1K_V1": "resnet152-394f9c45.pth",
                             "IMAGENET1K_V2": "resnet152-f82ba261.pth"}),
}


# --- driver side: options, file locations, identity --------------------------

def hub_dir() -> str:
    """torch.hub.get_dir() without importing torch when it is not loaded yet.

    Once torch is imported we ask it (it also honours torch.hub.set_dir);
    before that we apply the same environment rule it documents.
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return torch.hub.get_dir()
    if os.environ.get("TORCH_HOME"):
        base = os.environ["TORCH_HOME"]
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        base = os.path.join(xdg, "torch")
    return os.path.join(os.path.expanduser(base), "hub")


def _arch(arch, who):
    if arch not in ARCHES:
        raise ConfigError(f"{who}arch={arch!r} is not a known backbone (known: {', '.join(ARCHES)})")
    return ARCHES[arch]


def weights_file(arch, weights, weights_path=None, who="") -> str | None:
    """The weights file this choice reads (None for random weights)."""
    spec = _arch(arch, who)
    if weights == RANDOM:
        return None
    if weights_path:
        return os.path.abspath(os.path.expanduser(weights_path))
    name = "IMAGENET1K_V1" if weights == IMAGENET else weights
    if name not in spec.files:
        known = ", ".join([RANDOM, IMAGENET, *spec.files])
        raise ConfigError(f"{who}weights={weights!r} is not available for {arch} (known: {known})")
    return os.path.join(hub_dir(), "checkpoints", spec.files[name])


def check_weights(arch, weights, weights_path=None, seed=None, who="") -> None:
    """Raise ConfigError, naming the exact file and place, when the choice cannot be loaded."""
    who = f"{who}: " if who and not who.endswith(": ") else who
    path = weights_file(arch, weights, weights_path, who)
    if weights == RANDOM:
        if seed is None:
            raise ConfigError(f"{who}weights=random needs a seed (e.g. seed=0) so that every "
                              f"worker builds the same network")
        if weights_path:
            raise ConfigError(f"{who}weights_path={weights_path!r} is given but weights=random")
        return
    if os.path.isfile(path):
        return
    if weights_path:
        raise ConfigError(f"{who}weights_path={weights_path!r}: no such file ({path})")
    fname = os.path.basename(path)
    raise ConfigError(
        f"{who}ImageNet weights for {arch} not found. Put the file {fname} "
        f"(downloadable from {_URL_BASE}{fname}) at {path}, or set weights_path=<file>, "
        f"or use weights=random with a seed (random features, not ImageNet ones).")




def weights_identity(arch, weights, weights_path=None, seed=None) -> dict:
    """Cache-key material: the weights file's content digest, or for random
    weights the seed and the torch/torchvision versions whose initialisers
    produce them."""
    if weights == RANDOM:
        from importlib.metadata import version
        return {"weights": RANDOM, "seed": seed, "torch": version("torch"),
                "torchvision": version("torchvision")}
    from .digests import remembered_digest
    path = weights_file(arch, weights, weights_path)
    return {"weights": weights, "weights_digest": remembered_digest(path)}    # the content, not the file's name


# --- worker side: building and running the network -----------------------------

def pick_device(prefer=None) -> str:
    """CUDA when present (or when asked for), CPU otherwise."""
    import torch
    if prefer:
        return prefer
    return "cuda" if torch.cuda.is_available() else "cpu"


# Old DenseNet checkpoints (the ones torchvision still serves) name layers
# "norm.1"/"conv.2"; the current modules are "norm1"/"conv2".
_LEGACY_DENSENET = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


def _fix_keys(state):
    out = {}
    for key, value in state.items():
        m = _LEGACY_DENSENET.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def load_backbone(arch, weights=IMAGENET, weights_path=None, seed=None, device=None):
    """(model in eval mode on `device` returning pooled features, feature width).

    The classifier is replaced by Identity, so the output is the global
    average pool of the last feature map (1024-d for densenet121).
    """
    import torch
    import torchvision.models as tvm
    check_weights(arch, weights, weights_path, seed)
    spec = ARCHES[arch]
    if weights == RANDOM:
        # Initialisers draw from torch's global generator: fork it so the
        # caller's random state is left alone, and seed it so every worker
        # builds the same network.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = getattr(tvm, arch)(weights=None)
    else:
        model = getattr(tvm, arch)(weights=None)
        path = weights_file(arch, weights, weights_path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(_fix_keys(state))
    setattr(model, spec.head, torch.nn.Identity())
    model.eval()
    return model.to(device or pick_device()), spec.dim


def imagenet_normalise(batch):
    """(N, 3, H, W) images, uint8 0..255 or float 0..1 -> ImageNet-normalised float32 tensor."""
    import torch
    x = torch.as_tensor(batch)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def embed_batches(model, images, device, batch_size=32):
    """Run (N, 3, H, W) images (uint8 or float 0..1) through `model` in
    batches; returns an (N, D) float32 numpy array ((0, 0) for no images:
    callers that may pass none know their D)."""
    import numpy as np
    import torch
    outs = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            chunk = torch.as_tensor(images[i:i + batch_size]).to(device)
            outs.append(model(imagenet_normalise(chunk)).float().cpu().numpy())
    if not outs:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(outs).astype(np.float32, copy=False)
