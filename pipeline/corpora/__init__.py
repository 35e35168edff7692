"""Corpus readers: `read(root, **options) -> list[Item]`, registered by name.

Readers never write into the corpus folder. Importing this package imports
every reader module so the registry is complete.
"""
import pkgutil
from importlib import import_module

from ..registry import Registry

CORPORA = Registry("corpus")


class Items(list):
    """A reader's items plus its report: findings that belong to no single
    item (annotations without media, segments without labels, dropped
    entries), one line each. `pipeline extract` prints them with the item
    warnings."""

    def __init__(self, items=(), report=()):
        super().__init__(items)
        self.report = list(report)


def no_options(corpus, options):
    """Readers without options refuse any, naming them, before reading."""
    if options:
        raise ValueError(f"the {corpus} reader takes no options (got {', '.join(sorted(options))})")


def load_all():
    # Every module in this package registers itself on import.
    for info in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{info.name}")
    return CORPORA.load_plugins("emocache.corpora")


def read_corpus(name, root, **options):
    reader = load_all().get_or_fail(name)
    return reader(root, **options)
