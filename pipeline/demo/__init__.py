"""Demo corpora: real-format corpora fabricated from espeak-ng speech and a
photo, with a truth file that tests compare readers and stages against.

Each layout (a corpus's on-disk format) is a module registered in
DEMO_LAYOUTS; later corpora add a module here rather than a new generator.
"""
import inspect
import re
import shutil
from importlib import import_module
from pathlib import Path

from ..registry import Registry

DEMO_LAYOUTS = Registry("demo layout")
TRUTH_FILE = "emocache_demo_truth.json"

_MODULES = ("iemocap", "mosei", "affwild2", "meld")


def corpus_marks(root) -> dict:
    """What the cache records about a corpus folder: {"demo": True} for a
    corpus these generators wrote (its truth file is there), so that no paper
    figure is ever printed beside a run on it."""
    return {"demo": True} if (Path(root) / TRUTH_FILE).exists() else {}


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


def prepare(out, ours) -> Path:
    """Make folder `out` ready for a demo corpus whose top-level entries match
    the regular expression `ours`: a previous demo corpus there is replaced,
    anything else is refused."""
    out = Path(out)
    if out.exists():
        pattern = re.compile(f"(?:{ours})$|" + re.escape(TRUTH_FILE) + "$")
        strangers = [p.name for p in out.iterdir() if not pattern.match(p.name)]
        if strangers:
            raise ValueError(f"{out} holds files that are not a demo corpus ({', '.join(sorted(strangers)[:5])}); "
                             "choose an empty or new folder")
        for p in out.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def size_spec(sizes, size):
    """The layout's settings for a named size; an unknown name is refused
    before anything is written."""
    if size not in sizes:
        raise ValueError(f"unknown demo size {size!r} (known: {', '.join(sizes)})")
    return sizes[size]


def count(values) -> dict:
    """{value: how often}, sorted by value."""
    counts = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items()))
