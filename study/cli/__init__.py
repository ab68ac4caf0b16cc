"""The ``prunetax`` command line: thin subcommands over library functions.

Each subcommand module defines ``add(subparsers)``; heavy imports happen inside the
command functions so ``prunetax --help`` is instant. Option values are checked as they are
read (:mod:`study.cli.types`; argparse's usage error, exit code 2); a command first
validates what it was asked (its ``validate`` default, which writes nothing), then checks
the environment (:mod:`study.preflight`), then runs. A :class:`PrunetaxError` becomes a
one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from study.cli import catalog, demo, report, run, signals, store, sweep, train

__all__ = ["main", "build_parser"]

_COMMANDS = (demo, signals, catalog, train, run, sweep, store, report)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog="prunetax",
        description="Compare channel-pruning signals of CNNs: enumerate the taxonomy "
        "(input x pointwise x reduction x scaling), run prune-and-evaluate trials and "
        "sweeps into a Parquet store, and report on them.",
        epilog="Run `prunetax COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMANDS:
        module.add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prunetax`` console script."""
    args = build_parser().parse_args(argv)
    from taxonomy.errors import PrunetaxError

    try:
        return int(args.func(args) or 0)
    except PrunetaxError as err:
        print(f"prunetax {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `prunetax signals | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
