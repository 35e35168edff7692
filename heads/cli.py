"""The `heads` command: train and evaluate fusion heads on the feature cache."""
from __future__ import annotations

import argparse
import sys

from .models import load_all


def main(argv=None):
    p = argparse.ArgumentParser(prog="heads", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="registered heads and the stages each consumes")
    ls.set_defaults(func=cmd_list)
    args = p.parse_args(argv)
    return args.func(args) or 0


def cmd_list(args):
    heads = load_all()
    if not heads:
        print("no heads registered yet")
    for name, cls in sorted(heads.items()):
        print(f"{name:<16} needs {', '.join(cls.stages)}")


if __name__ == "__main__":
    sys.exit(main())
