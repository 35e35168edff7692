"""Demo corpora: real-format corpora fabricated from espeak-ng speech and a
photo, with a truth file that tests compare readers and stages against.

Each layout (a corpus's on-disk format) is a module registered in
DEMO_LAYOUTS; later corpora add a module here rather than a new generator.
"""
import inspect
from importlib import import_module

from ..registry import Registry

DEMO_LAYOUTS = Registry("demo layout")
TRUTH_FILE = "emocache_demo_truth.json"

_MODULES = ("iemocap",)


def load_all():
    for name in _MODULES:
        import_module(f"{__name__}.{name}")
    return DEMO_LAYOUTS


def make_demo(layout, out, size="small", seed=0, **opts) -> dict:
    """Write a demo corpus in `layout` to folder `out`; returns the truth
    (also written to `out/emocache_demo_truth.json`)."""
    make = load_all().get_or_fail(layout)
    known = set(inspect.signature(make).parameters) - {"out", "size", "seed"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"demo layout {layout!r} has no option {', '.join(unknown)} "
                         f"(options: {', '.join(sorted(known))})")
    return make(out, size=size, seed=seed, **opts)
