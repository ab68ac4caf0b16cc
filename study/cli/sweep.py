"""``prunetax sweep``: run a TOML-specified sweep through Ray Tune into the store."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep (models x datasets x seeds x signals x protocols) on Ray Tune",
        description="Expand a TOML sweep spec into trials, skip those already in the store, train the base "
        "models it needs, and run the rest as Ray Tune trials (local Ray by default; --address auto or "
        "$RAY_ADDRESS joins a cluster, whose nodes must all see the store path). Interrupt it any time: "
        "rerunning resumes from the store. See study/sweep/spec.py for the spec format.",
    )
    p.add_argument("spec", metavar="SPEC.toml", help="the sweep spec")
    p.add_argument("--dry-run", action="store_true", help="print the plan (counts, stored, to run) and exit")
    p.add_argument("--retry-failed", action="store_true", help="rerun only the trials stored as failed")
    p.add_argument("--address", help="Ray cluster address to join (e.g. auto); default: a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from study.sweep.plan import make_plan
    from study.sweep.spec import load_spec

    plan = make_plan(load_spec(args.spec), retry_failed=args.retry_failed)
    print(plan.describe())
    if args.dry_run:
        return 0
    if plan.nothing_to_do:
        print("nothing to do: every trial and rank job of this sweep is already stored.")
        return 0
    from study.sweep.runner import run_plan

    result = run_plan(plan, retry_failed=args.retry_failed, address=args.address, num_cpus=args.num_cpus)
    print(
        f"sweep finished in {result.wall_s:.0f} s: {result.ok} trials ok, {result.failed} failed, "
        f"{result.jobs} rank jobs; store {plan.spec.store}"
    )
    return 1 if result.failed else 0
