"""``prunetax sweep``: run a TOML-specified sweep through Ray Tune into the store."""

from __future__ import annotations

import argparse

from study.cli.types import COUNT, TEXT


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep (models x datasets x seeds x signals x protocols) on Ray Tune",
        description="Expand a TOML sweep spec into trials, skip those already in the store, train the base "
        "models it needs, and run the rest as Ray Tune trials (local Ray by default; --address auto or "
        "$RAY_ADDRESS joins a cluster, whose nodes must all see the store path). The spec and the "
        "environment (data, device, model/data fit, store) are checked before anything runs. Interrupt "
        "it any time: rerunning resumes from the store. Every key of the spec is documented in "
        "docs/spec.md; examples/*.toml are complete specs; paths in a spec are relative to its folder.",
    )
    p.add_argument("spec", metavar="SPEC.toml", type=TEXT, help="the sweep spec")
    p.add_argument("--dry-run", action="store_true", help="print the plan (counts, stored, to run) and exit")
    p.add_argument(
        "--list",
        action="store_true",
        help="with --dry-run: also list the signals each run expands to, per network",
    )
    p.add_argument("--retry-failed", action="store_true", help="rerun only the trials stored as failed")
    p.add_argument(
        "--address", type=TEXT, help="Ray cluster address to join (e.g. auto); default: a local Ray"
    )
    p.add_argument("--num-cpus", type=COUNT, help="CPUs of the local Ray (default: all cores)")
    p.set_defaults(func=_sweep, validate=validate_sweep)


def validate_sweep(args: argparse.Namespace):  # noqa: ANN201 - a study.sweep.spec.SweepSpec
    """The spec, read and validated (nothing else is touched)."""
    from study.sweep.spec import load_spec
    from taxonomy.errors import PrunetaxError

    if args.list and not args.dry_run:
        raise PrunetaxError("--list lists the signals of a plan; use it with --dry-run.", key="list")
    if args.num_cpus is not None and args.address:
        raise PrunetaxError(
            "--num-cpus sizes a local Ray; a cluster (--address) has its own.", key="num_cpus"
        )
    return load_spec(args.spec)


def _sweep(args: argparse.Namespace) -> int:
    import os

    from study.sweep.plan import check_environment, make_plan, signal_listing

    spec = validate_sweep(args)
    check_environment(spec, local=not (args.address or os.environ.get("RAY_ADDRESS")))
    plan = make_plan(spec, retry_failed=args.retry_failed)
    print(plan.describe())
    if args.dry_run:
        if args.list:
            print(signal_listing(spec))
        return 0
    if plan.nothing_to_do:
        print("nothing to do.")
        return 0
    from study.sweep.runner import run_plan

    result = run_plan(plan, retry_failed=args.retry_failed, address=args.address, num_cpus=args.num_cpus)
    print(
        f"sweep finished in {result.wall_s:.0f} s: {result.ok} trials ok, {result.failed} failed, "
        f"{result.jobs} rank jobs; store {plan.spec.store}"
    )
    return 1 if result.failed else 0
