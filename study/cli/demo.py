"""``prunetax demo``: the whole taxonomy study on the embedded default, end to end.

Trains the two default networks (digits_cnn and digits_resnet, 5 independent repeats each,
cached), runs one sweep on Ray - the paper's greedy sensitivity protocol at one unit per
step for every distinct signal plus random (5 draws) and the oracle; retraining for the
literature aliases and the paper's best signals, with and without mean replacement;
Theis's cost-aware Fisher pruning; the search baselines (best of N random masks, the
myopic oracle, activation voting); oracle rank quality along the oracle's trajectory - then
writes the report. The sweep spec is written to ``<out>/demo.toml`` so the same study can be
rerun, extended or moved to a cluster with ``prunetax sweep``. Rerunning skips everything
already stored and only regenerates the report.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from study.environment import DEFAULT_CACHE
from taxonomy.errors import PrunetaxError

SPEC = """\
# The prunetax demo study (written by `prunetax demo`; rerun with `prunetax sweep {out}/demo.toml`).
# {coarse}
[sweep]
name = "demo"
store = "store"                     # paths are relative to this file's folder
cache_dir = "{cache}"
models = {models}
datasets = ["digits"]
base_seeds = {seeds}
seeds = "base"                      # a repeat: its own split, base model and eval batches
signals = {signals}                 # distinct: per network (coupling decides the classes)
signals_per_unit = 500              # one unit per repeat and network: identical states merge
random_draws = 5                    # independent draws of `random` per repeat
device = "{device}"

[resources]
cpus_per_trial = 1
gpus_per_trial = {gpus}

[[runs]]                            # the paper's greedy loop, no retraining
protocol = "sensitivity"
channels_per_step = {cps}
stop_drop = {stop_drop}                       # every headline up to a {stop_drop}-point drop is read exactly

[[runs]]                            # retraining after every prune: literature signals
protocol = "retrain"
signals = {retrain_signals}
channels_per_step = {cps}
stop_drop = {stop_drop}
retrain_steps = 20

[[runs]]                            # the same, each pruned channel's mean folded into its consumers
protocol = "retrain"
signals = {mr_signals}
channels_per_step = {cps}
stop_drop = {stop_drop}
retrain_steps = 20
mean_replacement = true

[[runs]]                            # Theis et al.: Fisher pruning with a MAC cost
protocol = "fisher_cost"
signals = ["fisher"]
beta = 0.1
channels_per_step = {cps}
stop_drop = {stop_drop}

[[runs]]                            # the myopic oracle: measure 5 candidates, prune the best
protocol = "myopic"
signals = ["taylor_fo", "l1_filter"]
k = 5
channels_per_step = {cps}
stop_drop = {stop_drop}

[[runs]]                            # search baseline: the best of 20 random masks per target
protocol = "best_of_n"
signals = ["random"]
n_masks = 20
targets = [10, 20, 30, 40, 50, 60, 70]

[rank_quality]                      # every signal's unit ranking vs the oracle, every 4 steps
signals = {rank_signals}
every = 4
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
    p.add_argument(
        "--seeds", type=int, default=5, help="independent repeats per network (default 5; at least 2)"
    )
    p.add_argument(
        "--channels-per-step",
        type=float,
        default=1,
        help="units pruned per greedy step: 1 (default, the paper's protocol), a whole count k, or a "
        "fraction < 1 of all units; anything but 1 is labelled coarse (k units per step) in the report",
    )
    p.add_argument(
        "--stop-drop",
        type=float,
        default=10,
        help="stop a trajectory once test accuracy is this many points below the reference (default 10: "
        "the largest headline drop, so every headline is read exactly)",
    )
    p.add_argument(
        "--signals",
        nargs="+",
        default=["distinct", "random", "oracle", "activation_voting"],
        help="signal selectors for the sensitivity run (default: distinct random oracle activation_voting)",
    )
    p.add_argument(
        "--retrain-signals",
        nargs="+",
        default=["aliases", "paper_best", "random"],
        help="signal selectors for the retrain run (default: aliases paper_best random)",
    )
    p.add_argument(
        "--mean-replacement-signals",
        nargs="+",
        default=["aliases"],
        help="signal selectors retrained again with mean replacement on (default: aliases)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["digits_cnn", "digits_resnet"],
        help="networks (default: digits_cnn digits_resnet, right-sized for one unit per step)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    p.add_argument("--address", help="join a Ray cluster instead of starting a local one")
    p.set_defaults(func=_demo)


def spec_text(args: argparse.Namespace) -> str:
    """The demo's sweep spec as TOML."""

    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{s}"' for s in items) + "]"

    if args.seeds < 2:
        raise PrunetaxError(
            f"--seeds {args.seeds}: the demo compares signals over independent repeats and needs at least 2 "
            "(default 5)."
        )
    cps = args.channels_per_step
    coarse = (
        "The paper's protocol: one unit per greedy step."
        if cps == 1
        else f"COARSE: {cps:g} {'units' if cps >= 1 else 'of all units'} per step, not the paper's one unit "
        "(the report labels these runs coarse)."
    )
    rank = [s for s in args.signals if s != "oracle"] or ["random"]
    return SPEC.format(
        out=Path(args.out).as_posix(),
        coarse=coarse,
        cache=Path(os.path.relpath(Path(args.cache_dir).absolute(), Path(args.out).absolute())).as_posix(),
        seeds=list(range(args.seeds)),
        signals=toml_list(args.signals),
        device=args.device,
        gpus=0.5 if args.device.startswith("cuda") else 0,
        cps=int(cps) if cps >= 1 and float(cps).is_integer() else cps,
        stop_drop=f"{args.stop_drop:g}",
        rank_signals=toml_list(rank),
        retrain_signals=toml_list(args.retrain_signals),
        mr_signals=toml_list(args.mean_replacement_signals),
        models=toml_list(args.models),
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
