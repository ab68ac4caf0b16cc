"""``prunetax store``: look after a results store (ls, verify, compact, export)."""

from __future__ import annotations

import argparse

_TABLES = ("trials", "steps", "scores", "oracle", "rank_quality", "activity")  # study.store.TABLES, no import
_VIEWS = ("runs",)  # study.store.view.VIEWS


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
    _add_verify(cmds)

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
    _add_export(cmds)


def _add_verify(cmds: argparse._SubParsersAction) -> None:
    v = cmds.add_parser(
        "verify",
        help="prove the store's integrity: checksums, readable files, steps of ok trials (exit 1 on errors)",
        description="Check every file of the store against the sha256 written with it (files of an "
        "older prunetax without one are read in full), and report what does not belong: unreadable "
        "or changed files, foreign files (not Parquet, another schema, unknown table folder), ok trials "
        "without their steps and rank jobs without their scores; as notes, stale temp files, "
        "superseded compacted generations, files without a checksum and trials awaiting a rerun. "
        "Exits 1 when an error was found. Changes nothing unless --quarantine.",
    )
    v.add_argument("store", metavar="STORE")
    v.add_argument(
        "--quarantine",
        action="store_true",
        help="move every reported file to STORE/_quarantine/<UTC time>/ (same relative path), then "
        "invalidate the trials and rank jobs that lost rows, so the next sweep reruns exactly those",
    )
    v.add_argument(
        "--stale-after",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="age from which temp files count as stale (default 3600); younger ones belong to live writers",
    )
    v.set_defaults(func=_verify)


def _add_export(cmds: argparse._SubParsersAction) -> None:
    e = cmds.add_parser(
        "export",
        help="write one deduplicated table, or the joined `runs` view, to CSV or Parquet",
        description="Write a table deduplicated as readers see it, or the `runs` view (every steps row "
        "with its trial's model, dataset, protocol, signal, components and seeds), to one file. The "
        "format follows the extension of --out: .csv, or .parquet/.pq (zstd). Written atomically.",
    )
    e.add_argument("store", metavar="STORE")
    e.add_argument("--table", required=True, metavar="T", help=", ".join(_TABLES + _VIEWS))
    e.add_argument("--out", required=True, metavar="FILE", help="file to write: FILE.csv or FILE.parquet")
    e.add_argument("--columns", metavar="COL[,COL]", help="only these columns")
    e.set_defaults(func=_export)


def _ls(args: argparse.Namespace) -> int:
    from study.store import summary

    rows = summary(args.store)
    print(f"{'table':<13} {'loose':>7} {'parts':>5} {'rows':>10} {'raw rows':>10} {'run_keys':>9}  trials")
    for s in rows:
        trials = f"{s.ok} ok, {s.failed} failed" if s.ok is not None else ""
        trials += f", {s.lost} lost (rerun by the next sweep)" if s.lost else ""
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
