"""Stages, one module each, registered by name in STAGES."""
import pkgutil
from importlib import import_module

from ..registry import Registry

STAGES = Registry("stage")



def load_all():
    # Every module in this package registers itself on import.
    for info in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{info.name}")
    return STAGES.load_plugins("emocache.stages")
