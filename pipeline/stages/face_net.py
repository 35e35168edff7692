"""The face stage's `expression` embedding: an expression-trained face network
on the aligned face crops (MODELS.md §4: EMMA-Net's face stream).

EMMA-Net's paper embeds each face with FAN pretrained on AffectNet and
fine-tuned on Aff-Wild2. Such weights cannot ship with this project, so the
network is named here and read from a file the user supplies: a torchvision
backbone's state dict trained on facial expressions (the classifier layer,
whatever its class count, is dropped; the embedding is the pooled features
before it). The stage's `weights` option names the network (an
EXPRESSION_NETS key, e.g. weights = "affectnet_resnet50"), `weights_path`
where its file is. Nothing is downloaded; a missing file is a ConfigError (exit 2
before any work) that says where to put it or how to point at it.

API (driver side cheap, torch only inside the worker-side function):
    EXPRESSION_NETS                        name -> ExpressionNet
    expression_file(cfg)                   -> the weights file it reads
    check_expression_net(cfg, who)         -> None or ConfigError
    expression_identity(cfg)               -> cache-key material
    load_expression_net(cfg, device)       -> (model, feature width)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..cnn import ARCHES, IMAGENET, hub_dir, weights_identity
from ..stage import ConfigError


@dataclass(frozen=True)
class ExpressionNet:
    arch: str                   # torchvision architecture (pipeline/cnn.py ARCHES)
    file: str                   # default file name under <torch hub>/checkpoints/emocache/
    trained_on: str             # what the weights must have learnt, for the error message


EXPRESSION_NETS = {
    "affectnet_resnet50": ExpressionNet(
        "resnet50", "affectnet_resnet50.pth",
        "facial expressions on aligned face crops: AffectNet's 8 expressions, ideally fine-tuned on "
        "Aff-Wild2 as EMMA-Net's FAN was"),
    "affectnet_resnet18": ExpressionNet(
        "resnet18", "affectnet_resnet18.pth", "facial expressions on aligned face crops (AffectNet)"),
}


def _net(cfg, who) -> ExpressionNet:
    if cfg.weights not in EXPRESSION_NETS:
        raise ConfigError(f"{who}: embedding=expression: weights={cfg.weights!r} is not a known face network "
                          f"(known: {', '.join(EXPRESSION_NETS)})")
    return EXPRESSION_NETS[cfg.weights]


def expression_file(cfg, who="face") -> str:
    """weights_path when given, else the named network's default place."""
    if cfg.weights_path:
        return os.path.abspath(os.path.expanduser(cfg.weights_path))
    return os.path.join(hub_dir(), "checkpoints", "emocache", _net(cfg, who).file)


def check_expression_net(cfg, who):
    """ConfigError naming the network, the file and how to provide it."""
    net = _net(cfg, who)
    path = expression_file(cfg, who)
    if os.path.isfile(path):
        return
    raise ConfigError(
        f"{who}: the face network {cfg.weights} is not on this machine: expected a torchvision "
        f"{net.arch} state dict trained on {net.trained_on}, at {path}. Put the file there, or point at it "
        f"with --set <face spec>.weights_path=<file> (e.g. --set face@emmanet_expr.weights_path=/models/fer.pth); "
        f"it is read with torch.load(weights_only=True). MediaPipe features need no file: "
        f"embedding=blendshapes (the demo's face@emmanet).")


def expression_identity(cfg) -> dict:
    net = EXPRESSION_NETS[cfg.weights]
    return {"expression_net": cfg.weights,
            **weights_identity(net.arch, IMAGENET, expression_file(cfg))}


def _state_dict(loaded):
    """The parameter dict inside a checkpoint: bare, or under state_dict /
    model, with DataParallel's `module.` prefix removed."""
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict):
        raise ConfigError("the face network file holds no state dict")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def load_expression_net(cfg, device):
    """(model in eval mode returning the pooled features, their width)."""
    import torch
    import torchvision.models as tvm
    net = EXPRESSION_NETS[cfg.weights]
    spec = ARCHES[net.arch]
    model = getattr(tvm, net.arch)(weights=None)
    setattr(model, spec.head, torch.nn.Identity())
    path = expression_file(cfg)
    state = _state_dict(torch.load(path, map_location="cpu", weights_only=True))
    state = {k: v for k, v in state.items() if not k.startswith(spec.head + ".")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"face network {cfg.weights}: {path} does not fit a {net.arch} "
                          f"backbone: {str(e).splitlines()[0]}") from None
    model.eval()
    return model.to(device), spec.dim
