"""``prunetax report``: figures, summary.md and an offline index.html from a results store."""

from __future__ import annotations

import argparse

from study.cli.types import COUNT, TEXT


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the report of a results store (figures, summary.md, index.html)",
        description="Read a results store once and write its report: accuracy-sparsity curves, "
        "reduction x scaling heatmaps, the critical-difference diagram, component effects, oracle "
        "rank quality and rank similarity (PNG + SVG), the tables in summary.md, and an index.html "
        "that opens offline. Prints the top table of the leading protocol label (the paper's greedy "
        "`sensitivity` at one unit per step when the store has it), the test-set noise and the "
        "report's path.",
    )
    p.add_argument(
        "store", metavar="STORE", type=TEXT, help="the results store (folder holding trials/, steps/, ...)"
    )
    p.add_argument(
        "--out", required=True, type=TEXT, metavar="DIR", help="report folder (created; files overwritten)"
    )
    p.add_argument(
        "--metric",
        type=TEXT,
        default="sparsity_at_5",
        help="headline metric: sparsity_at_{1,2,5,10}, macs_sparsity_at_{d}, auc, retrain_steps_at_{d} "
        "(default sparsity_at_5: weight sparsity at a 5-point accuracy drop)",
    )
    p.add_argument("--top", type=COUNT, default=10, help="rows of the top tables (default 10)")
    p.set_defaults(func=_report, validate=validate_report)


def validate_report(args: argparse.Namespace) -> None:
    """The report folder can be written (an existing file there is an error); nothing is written."""
    from study.preflight import check_folder

    check_folder(args.out, "out")


def print_report(result, metric: str) -> None:  # noqa: ANN001 - analysis.report.ReportResult
    """The leading protocol label's top table (the paper's greedy one-unit-per-step
    ``sensitivity`` when the store has it), the test-set noise, the notes and where the report is."""
    table = result.top
    others = [label for label in getattr(result, "labels", []) if label != result.protocol]
    cols = ["rank", "signal", "alias", "mean_rank", "n_tasks", "n_wins", "geomean", "mean", "std", "ci_low"]
    cols += ["ci_high", "dist", "n_seeds"]
    print(
        f"Top {len(table)} signals of the `{result.protocol}` protocol by mean rank over its tasks "
        f"({metric}; within a task: geomean over seeds, random as the median over its draws):"
    )
    print(table[[c for c in cols if c in table]].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if others:
        print(f"ranked apart in the report: {', '.join(f'`{label}`' for label in others)}")
    noise = getattr(result, "noise", None)
    if noise is not None and len(noise):
        ses = [
            f"{r.model}/{r.dataset} {r.se:.2f}" if r.se == r.se else f"{r.model}/{r.dataset} unknown"
            for r in noise.itertuples()
        ]
        print(f"test-set SE at the reference accuracy (points): {', '.join(ses)}; smaller gaps are noise")
    for note in result.notes:
        print(f"note: {note}")
    print(f"report: {result.index_html} ({len(result.figures)} figures, summary: {result.summary_md})")


def _report(args: argparse.Namespace) -> int:
    from analysis.report import build_report

    validate_report(args)
    print_report(build_report(args.store, args.out, metric=args.metric, top=args.top), args.metric)
    return 0
