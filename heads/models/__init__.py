"""Head registry: one module per head, registered by name."""
from importlib import import_module

from pipeline.registry import Registry

HEADS = Registry("head")

_MODULES = ()


def load_all():
    for name in _MODULES:
        import_module(f"{__name__}.{name}")
    return HEADS
