"""``prunetax signals`` and ``prunetax explain``: browse the signal space."""

from __future__ import annotations

import argparse
import sys

from study.cli.types import TEXT, ids
from taxonomy.components import AXES


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "signals",
        help="list the signal space (630 cells), filtered by component",
        description="List every cell of the taxonomy with its equivalence class, literature "
        "aliases and formula. Filters take one or more comma-separated ids.",
    )
    for axis in ("input", "pointwise", "reduction", "scaling"):
        choices = ", ".join(o.id for o in AXES[axis])
        p.add_argument(
            f"--{axis}", type=ids, metavar="ID[,ID]", help=f"keep only these {axis} ids ({choices})"
        )
    p.add_argument(
        "--distinct", action="store_true", help="one cell per equivalence class (its representative)"
    )
    p.add_argument(
        "--aliases",
        action="store_true",
        help="only cells with a literature alias (l1_filter, taylor_fo, ...)",
    )
    _context_args(p)
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="output format (default: table); the count line goes to stderr for csv/json",
    )
    p.set_defaults(func=_signals, validate=validate_signals)

    e = sub.add_parser(
        "explain",
        help="explain one signal: components, formula, class, literature name",
        description="Explain a signal given by id (input-pointwise-reduction-scaling) or "
        "alias (e.g. taylor_fo, best_gradient, random).",
    )
    e.add_argument("signal", metavar="ID_OR_ALIAS", type=TEXT)
    _context_args(e)
    e.set_defaults(func=_explain, validate=validate_explain)


def _context_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "equivalence context (which rules hold at the unit level: see README, Equivalence classes)"
    )
    g.add_argument(
        "--model",
        type=TEXT,
        help="classes for this registry model: coupled units (residual adds, depthwise convs) "
        "keep some rule-4c cells apart (default: a network without coupled units)",
    )
    g.add_argument(
        "--coupled", action="store_true", help="classes for a network with coupled units (no model needed)"
    )
    g.add_argument(
        "--aggregation",
        default="pooled",
        choices=("pooled", "sum", "mean", "max"),
        help="how a coupled unit's score is formed (default pooled)",
    )


def _context(args: argparse.Namespace):  # noqa: ANN202 - a taxonomy.equivalence.Context
    from taxonomy.equivalence import Context
    from taxonomy.errors import PrunetaxError

    if args.model is not None and args.coupled:
        raise PrunetaxError("--coupled stands for a network you do not name; with --model leave it out.")
    if args.model is None:
        return Context(args.coupled, args.aggregation)
    from study.groups import network_context

    return network_context(args.model, args.aggregation)


def validate_signals(args: argparse.Namespace) -> tuple:
    """The cells the filters select, in their context (unknown ids are errors)."""
    from taxonomy.listing import filter_cells

    context = _context(args)
    cells = filter_cells(
        {axis: getattr(args, axis) for axis in ("input", "pointwise", "reduction", "scaling")},
        distinct=args.distinct,
        aliases_only=args.aliases,
        context=context,
    )
    return cells, context


def _signals(args: argparse.Namespace) -> int:
    from taxonomy.listing import methods_text, render, summary_line

    cells, context = validate_signals(args)
    sys.stdout.write(render(cells, args.format))
    if args.aliases and args.format == "table":
        sys.stdout.write(methods_text())
    stream = sys.stdout if args.format == "table" else sys.stderr
    print(summary_line(cells, context), file=stream)
    return 0


def validate_explain(args: argparse.Namespace) -> tuple:
    """The signal (a partial id is told which part it lacks) and its context."""
    from study.sweep.signals import parse_signal

    return parse_signal(args.signal), _context(args)


def _explain(args: argparse.Namespace) -> int:
    from taxonomy.listing import explain

    print(explain(*validate_explain(args)))
    return 0
