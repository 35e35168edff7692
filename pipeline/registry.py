"""Name -> object registries filled by decorators.

The CLI builds its choices and `list` output from these, so adding a stage,
corpus or demo layout never touches the CLI.

Installed distributions add to a registry through an entry-point group
(`emocache.stages`, `emocache.corpora`, `emocache.heads`): each entry names a
module that registers its objects on import (as the built-in modules do), or
the object itself, registered under the entry's name. A plugin that fails to
load is named in a `PluginWarning` and left out; the rest still loads.
"""
import warnings


class PluginWarning(UserWarning):
    """A plugin (entry point) that could not be loaded or registered."""


class Registry(dict):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.aliases = {}           # other name -> the name it stands for
        self.plugin_groups = set()  # entry-point groups already loaded

    def alias(self, name, target):
        """Make `name` a second name of the registered `target` (one object,
        listed once, under `target`)."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self[name] = self.get_or_fail(target)
        self.aliases[name] = target

    def register(self, name=None):
        def deco(obj):
            key = name or obj.name
            if key in self:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self[key] = obj
            return obj
        return deco

    def load_plugins(self, group):
        """Register what installed distributions declare in entry-point
        `group`, once per process (a worker process loads them itself)."""
        if group in self.plugin_groups:
            return self
        self.plugin_groups.add(group)
        from importlib.metadata import entry_points
        for ep in entry_points(group=group):
            try:
                self._add_plugin(ep)
            except Exception as e:      # a broken plugin must not take the others down
                warnings.warn(f"{self.kind} plugin {ep.name!r} ({ep.value}, entry point group {group}) "
                              f"not loaded: {type(e).__name__}: {e}", PluginWarning, stacklevel=2)
        return self

    def _add_plugin(self, ep):
        before = set(self)
        obj = ep.load()
        if callable(obj):                   # a class or function named by the entry itself
            if any(self[k] is obj for k in self):
                return                  # it registered itself on import
            self.register(ep.name)(obj)
        elif set(self) == before:
            raise ValueError(f"module {ep.value} registered no {self.kind}")

    def get_or_fail(self, name):
        try:
            return self[name]
        except KeyError:
            known = ", ".join(sorted(self)) or "none"
            raise UnknownName(f"unknown {self.kind} {name!r} (known: {known})") from None


class UnknownName(ValueError):
    """A name on the command line or in a config that no registry knows."""
