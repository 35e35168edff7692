"""Head registry: one module per head, registered by name.

Every module in this package registers its heads on import (like the stage
modules of `pipeline.stages`), so adding a head never touches this file or the
CLI. Modules whose name starts with `_` are helpers, not heads.
"""
import pkgutil
from importlib import import_module

from pipeline.registry import Registry

HEADS = Registry("head")


def load_all():
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            import_module(f"{__name__}.{info.name}")
    return HEADS.load_plugins("emocache.heads")
