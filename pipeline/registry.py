"""Name -> object registries filled by decorators.

The CLI builds its choices and `list` output from these, so adding a stage,
corpus or demo layout never touches the CLI.
"""


class Registry(dict):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.aliases = {}           # other name -> the name it stands for

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

    def get_or_fail(self, name):
        try:
            return self[name]
        except KeyError:
            known = ", ".join(sorted(self)) or "none"
            raise UnknownName(f"unknown {self.kind} {name!r} (known: {known})") from None


class UnknownName(ValueError):
    """A name on the command line or in a config that no registry knows."""
