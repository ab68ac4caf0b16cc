"""``prunetax signals`` and ``prunetax explain``: browse the signal space."""

from __future__ import annotations

import argparse
import sys


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "signals",
        help="list the signal space (480 cells), filtered by component",
        description="List every cell of the taxonomy with its equivalence class, literature "
        "aliases and formula. Filters take one or more comma-separated ids.",
    )
    for axis in ("input", "pointwise", "reduction", "scaling"):
        p.add_argument(f"--{axis}", metavar="ID[,ID]", help=f"keep only these {axis} ids")
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
    p.set_defaults(func=_signals)

    e = sub.add_parser(
        "explain",
        help="explain one signal: components, formula, class, literature name",
        description="Explain a signal given by id (input-pointwise-reduction-scaling) or "
        "alias (e.g. taylor_fo, best_gradient, random).",
    )
    e.add_argument("signal", metavar="ID_OR_ALIAS")
    _context_args(e)
    e.set_defaults(func=_explain)


def _context_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "equivalence context (which rules hold at the unit level: see README, Equivalence classes)"
    )
    g.add_argument(
        "--model",
        help="classes for this registry model: coupled units (residual adds, depthwise convs) "
        "keep some rule-4c cells apart (default: a network without coupled units)",
    )
    g.add_argument(
        "--coupled", action="store_true", help="classes for a network with coupled units (no model needed)"
    )
    g.add_argument(
        "--aggregation",
        default="pooled",
        help="how a coupled unit's score is formed: pooled | sum | mean | max (default pooled)",
    )


def _context(args: argparse.Namespace):  # noqa: ANN202 - a taxonomy.equivalence.Context
    from taxonomy.equivalence import Context

    if args.model is None:
        return Context(args.coupled, args.aggregation)
    from study.groups import network_context

    return network_context(args.model, args.aggregation)


def _signals(args: argparse.Namespace) -> int:
    from taxonomy.listing import filter_cells, render, summary_line

    cells = filter_cells(
        {axis: getattr(args, axis) for axis in ("input", "pointwise", "reduction", "scaling")},
        distinct=args.distinct,
        aliases_only=args.aliases,
        context=(context := _context(args)),
    )
    sys.stdout.write(render(cells, args.format))
    stream = sys.stdout if args.format == "table" else sys.stderr
    print(summary_line(cells, context), file=stream)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from taxonomy.listing import explain
    from taxonomy.spec import parse

    print(explain(parse(args.signal), _context(args)))
    return 0
