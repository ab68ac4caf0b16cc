"""``prunetax demo``: the whole taxonomy study on the embedded default, end to end.

Trains the two default networks (3 seeds each, cached), runs one sweep on Ray - every
distinct signal plus random and the oracle under the paper's greedy sensitivity
protocol, retraining for the literature aliases, and oracle rank quality for every
signal - then writes the report. The sweep spec is written to ``<out>/demo.toml`` so
the same study can be rerun, extended or moved to a cluster with ``prunetax sweep``.
Rerunning skips everything already stored and only regenerates the report.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from study.environment import DEFAULT_CACHE

SPEC = """\
# The prunetax demo study (written by `prunetax demo`; rerun with `prunetax sweep {out}/demo.toml`).
[sweep]
name = "demo"
store = "store"                     # paths are relative to this file's folder
cache_dir = "{cache}"
models = ["tiny_cnn", "tiny_resnet"]
datasets = ["digits"]
base_seeds = {seeds}
seeds = "base"                      # a repeat: its own split, base model and eval batches
signals = {signals}                 # distinct: per network (coupling decides the classes)
signals_per_unit = 60               # signals pruned in lockstep per Ray trial
random_draws = 5                    # independent draws of `random` per repeat
device = "{device}"

[resources]
cpus_per_trial = 1
gpus_per_trial = {gpus}

[[runs]]                            # the paper's greedy loop, no retraining
protocol = "sensitivity"
channels_per_step = {cps}
stop_acc = 50

[[runs]]                            # retraining after every prune: literature signals
protocol = "retrain"
signals = {retrain_signals}
channels_per_step = {cps}
stop_acc = 50
retrain_steps = 20

[rank_quality]                      # every signal's unit ranking vs the oracle
signals = {rank_signals}
"""


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole taxonomy study on the embedded digits data and write the report",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--out", default="results/demo", help="study folder (default results/demo)")
    p.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE), help=f"base-model cache (default {DEFAULT_CACHE})"
    )
    p.add_argument("--seeds", type=int, default=3, help="repeats per network (default 3)")
    p.add_argument(
        "--channels-per-step",
        type=float,
        default=0.1,
        help="fraction of units pruned per step (default 0.1)",
    )
    p.add_argument(
        "--signals",
        nargs="+",
        default=["distinct", "random", "oracle"],
        help="signal selectors for the sensitivity run (default: distinct random oracle)",
    )
    p.add_argument(
        "--retrain-signals",
        nargs="+",
        default=["aliases", "paper_best", "random"],
        help="signal selectors for the retrain run (default: aliases paper_best random)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    p.add_argument("--address", help="join a Ray cluster instead of starting a local one")
    p.set_defaults(func=_demo)


def spec_text(args: argparse.Namespace) -> str:
    """The demo's sweep spec as TOML."""

    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{s}"' for s in items) + "]"

    rank = [s for s in args.signals if s != "oracle"] or ["random"]
    return SPEC.format(
        out=Path(args.out).as_posix(),
        cache=Path(os.path.relpath(Path(args.cache_dir).absolute(), Path(args.out).absolute())).as_posix(),
        seeds=list(range(args.seeds)),
        signals=toml_list(args.signals),
        device=args.device,
        gpus=0.5 if args.device.startswith("cuda") else 0,
        cps=args.channels_per_step,
        rank_signals=toml_list(rank),
        retrain_signals=toml_list(args.retrain_signals),
    )


def _demo(args: argparse.Namespace) -> int:
    from study.sweep.plan import check_environment, make_plan
    from study.sweep.spec import parse_spec

    out = Path(args.out)
    spec_path, text = out / "demo.toml", spec_text(args)
    spec = parse_spec(text, str(spec_path), base=out)  # validate before writing anything
    check_environment(spec, local=not args.address)
    out.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(text)
    start = time.perf_counter()
    plan = make_plan(spec)
    print(plan.describe())
    failed = 0
    if plan.nothing_to_do:
        print("every trial is already stored: regenerating the report only.")
    else:
        from study.sweep.runner import run_plan

        result = run_plan(plan, address=args.address, num_cpus=args.num_cpus)
        failed = result.failed
        print(
            f"sweep: {result.ok} trials ok, {result.failed} failed, {result.jobs} rank jobs "
            f"in {result.wall_s:.0f} s"
        )
    from analysis.report import build_report
    from study.cli.report import print_report

    print_report(build_report(plan.spec.store, out / "report"), "sparsity_at_5")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0
