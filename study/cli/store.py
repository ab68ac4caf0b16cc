"""``prunetax store``: look after a results store (ls, verify, compact, export)."""

from __future__ import annotations

import argparse

_TABLES = ("trials", "steps", "scores", "oracle", "rank_quality")  # study.store.TABLES, without importing it


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "store",
        help="inspect, check, compact and export a results store",
        description="Maintain a results store (STORE = the folder holding trials/, steps/, ...). "
        "Reading never needs these commands; they keep a large store fast and clean.",
    )
    cmds = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    ls = cmds.add_parser("ls", help="per table: files, rows, run_keys, ok/failed trials")
    ls.add_argument("store", metavar="STORE")
    ls.set_defaults(func=_ls)

    v = cmds.add_parser(
        "verify",
        help="find unreadable/foreign files and stale temp files (exit 1 on errors)",
        description="Read every file of the store and report those that do not belong: unreadable "
        "(truncated) Parquet, foreign files (not Parquet, another schema, unknown table folder), "
        "and, as notes, stale temp files and superseded compacted generations. Exits 1 when an "
        "error was found. Changes nothing unless --quarantine.",
    )
    v.add_argument("store", metavar="STORE")
    v.add_argument(
        "--quarantine",
        action="store_true",
        help="move every reported file to STORE/_quarantine/<UTC time>/ (same relative path)",
    )
    v.add_argument(
        "--stale-after",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="age from which temp files count as stale (default 3600); younger ones belong to live writers",
    )
    v.set_defaults(func=_verify)

    c = cmds.add_parser(
        "compact",
        help="fold each table's small files into a few large ones (loses nothing)",
        description="Merge the loose files and the previous compacted data of each table into "
        "large row groups, deduplicated like the reader. Safe while workers write; run one "
        "compaction at a time.",
    )
    c.add_argument("store", metavar="STORE")
    c.add_argument(
        "--table", action="append", metavar="T", help=f"only this table (repeatable; {', '.join(_TABLES)})"
    )
    c.set_defaults(func=_compact)

    e = cmds.add_parser("export", help="write one deduplicated table to CSV")
    e.add_argument("store", metavar="STORE")
    e.add_argument("--table", required=True, metavar="T", help=", ".join(_TABLES))
    e.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    e.add_argument("--columns", metavar="COL[,COL]", help="only these columns")
    e.set_defaults(func=_export)


def _ls(args: argparse.Namespace) -> int:
    from study.store import summary

    rows = summary(args.store)
    print(f"{'table':<13} {'loose':>7} {'parts':>5} {'rows':>10} {'raw rows':>10} {'run_keys':>9}  trials")
    for s in rows:
        trials = f"{s.ok} ok, {s.failed} failed" if s.ok is not None else ""
        skipped = f"  ({s.skipped_files} unreadable/foreign files skipped)" if s.skipped_files else ""
        print(
            f"{s.table:<13} {s.loose_files:>7} {s.compacted_parts:>5} {s.rows:>10} {s.raw_rows:>10} "
            f"{s.run_keys:>9}  {trials}{skipped}"
        )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from study.store import verify

    report = verify(args.store, quarantine=args.quarantine, stale_after_s=args.stale_after)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _compact(args: argparse.Namespace) -> int:
    from study.store import compact
    from study.store.maintenance import require_store
    from study.store.schema import schema_of

    require_store(args.store)
    tables = args.table or list(_TABLES)
    for table in tables:
        schema_of(table)  # an unknown table fails before anything is touched
    for table in tables:
        print(compact(args.store, table).line())
    return 0


def _export(args: argparse.Namespace) -> int:
    from study.store import export

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    n = export(args.store, args.table, args.out, columns)
    print(f"wrote {n} rows of {args.table} to {args.out}")
    return 0
