"""``prunetax run`` (single trials) and ``prunetax scores`` (per-channel scores)."""

from __future__ import annotations

import argparse
import sys

from study.environment import DEFAULT_CACHE


def protocol_args(p: argparse.ArgumentParser) -> None:
    """The protocol options, taken from the protocol registry (one flag per parameter)."""
    from study.cli.options import add_param_options
    from study.protocols import PROTOCOLS, all_parameters, owners

    g = p.add_argument_group("protocol (each option applies to the protocols named in brackets)")
    summary = "; ".join(f"{n}: {PROTOCOLS.get(n).summary}" for n in PROTOCOLS)
    g.add_argument("--protocol", default="sensitivity", help=f"{summary} (default: sensitivity)")
    params = all_parameters().values()
    notes = {
        q.name: "all" if len(owners(q.name)) == len(PROTOCOLS) else ", ".join(owners(q.name)) for q in params
    }
    add_param_options(g, params, notes)


def protocol_from_args(args: argparse.Namespace):  # noqa: ANN201 - a study.protocols.Protocol
    """The protocol the options describe; an option of another protocol is an error."""
    from study.cli.options import given
    from study.protocols import all_parameters, make_protocol

    return make_protocol(args.protocol, **given(args, all_parameters().values()))


def _saliency_args(p: argparse.ArgumentParser) -> None:
    from study.cli.options import add_param_options
    from study.params import parameters
    from study.saliency import SaliencyData

    add_param_options(p.add_argument_group("saliency data"), parameters(SaliencyData))


def _context_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where things are")
    g.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE), help=f"base-model cache (default {DEFAULT_CACHE})"
    )
    g.add_argument("--data-root", help="dataset folder (default $PRUNETAX_DATA or ~/.cache/prunetax/data)")
    g.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    g.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small networks run fastest single-threaded, "
        "and parallel trials must not oversubscribe the cores)",
    )
    g.add_argument("--download", action="store_true", help="download missing datasets (online machines only)")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run pruning trials of one model/dataset and store them",
        description="Prune a trained base model (trained and cached on first use) with one or more signals "
        "under a protocol, write each trial to the results store, and print its headline figure: the "
        "weight sparsity reached before test accuracy drops 5 points.",
    )
    p.add_argument("--model", default="tiny_cnn", help="registry model (see `prunetax train --help`)")
    p.add_argument("--dataset", default="digits", help="dataset name (default digits, embedded)")
    p.add_argument(
        "--signal",
        action="append",
        required=True,
        metavar="ID_OR_ALIAS",
        help="signal to run (repeatable): id, alias, random or oracle",
    )
    p.add_argument("--seed", type=int, default=0, help="trial seed: eval batches, random signal, retraining")
    p.add_argument(
        "--random-draws",
        type=int,
        default=5,
        help="independent draws of the random signal (its distribution is the baseline; default 5)",
    )
    p.add_argument("--base-seed", type=int, default=0, help="seed of the base model's training")
    p.add_argument("--store", default="results/store", help="results store folder (default results/store)")
    p.add_argument("--force", action="store_true", help="rerun trials already in the store")
    protocol_args(p)
    _context_args(p)
    p.set_defaults(func=_run)

    s = sub.add_parser(
        "scores",
        help="write every channel's score for signals on the unpruned network",
        description="Score every conv channel of a trained network with the requested signals and write "
        "one row per (signal, layer, channel) to a Parquet file, with the seed and eval examples used.",
    )
    s.add_argument("--checkpoint", required=True, help="a checkpoint written by `prunetax train`")
    s.add_argument("--dataset", required=True, help="the dataset the checkpoint was trained on")
    s.add_argument(
        "--signals",
        nargs="+",
        default=["all"],
        help="`all` (480 cells), `distinct`, or ids/aliases (random and oracle allowed)",
    )
    s.add_argument("--seed", type=int, default=0, help="chooses the eval examples")
    _saliency_args(s)
    s.add_argument("--out", required=True, help="output Parquet file")
    s.add_argument("--dump-inputs", metavar="FILE.pt", help="also save the eval tensors and labels used")
    _context_args(s)
    s.set_defaults(func=_scores)


def environment(args: argparse.Namespace):  # noqa: ANN201 - a study.environment.Environment
    from study.environment import Environment

    return Environment(args.cache_dir, args.data_root, args.device, args.download)


def _label(signal: str, draw: int) -> str:
    return f"{signal} (draw {draw})" if signal == "random" else signal


def _set_threads(n: int) -> None:
    import torch

    from taxonomy.errors import PrunetaxError

    if n < 1:
        raise PrunetaxError(f"`--threads` must be >= 1; got {n}.")
    torch.set_num_threads(n)


def _run(args: argparse.Namespace) -> int:
    from study.execute import execute, pending
    from study.store import Store
    from study.trial import TrialSpec
    from taxonomy.spec import parse

    if args.random_draws < 1:
        from taxonomy.errors import PrunetaxError

        raise PrunetaxError(f"`--random-draws` must be >= 1; got {args.random_draws}.")
    protocol = protocol_from_args(args)
    _set_threads(args.threads)
    specs = [
        TrialSpec(args.model, args.dataset, s.id, protocol, args.seed, args.base_seed, draw)
        for s in (parse(x) for x in args.signal)
        for draw in range(args.random_draws if s.randomised else 1)
    ]
    for spec in specs[:1]:
        spec.validate_names()
    store = Store(args.store)
    skip = () if args.force else ("ok",)
    todo = pending(specs, store, skip)
    for spec in specs:
        if spec not in todo:
            print(f"{_label(spec.signal, spec.draw)}: already stored ({spec.run_key}); use --force to rerun")
    failed = 0

    def report(record) -> None:  # noqa: ANN001
        nonlocal failed
        t = record.trial
        if not record.ok:
            failed += 1
            print(f"{_label(t['signal'], t['draw'])}: FAILED: {t['error']}", file=sys.stderr)
            return
        print(
            f"{_label(t['signal'], t['draw'])}: sparsity at a 5-point drop {t['sparsity_at_5']:.2f}% "
            f"(1: {t['sparsity_at_1']:.2f}, 2: {t['sparsity_at_2']:.2f}, 10: {t['sparsity_at_10']:.2f}); "
            f"reference {t['reference_acc']:.2f}%, {t['n_steps']} steps, {t['wall_s']:.1f} s, "
            f"run_key {t['run_key']}"
        )

    execute(todo, store, environment(args), skip=(), on_record=report)
    if todo:
        print(f"stored in {store.root}")
    return 1 if failed else 0


def _scores(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from study.base_model import load_base
    from study.checkpoint import Checkpoint
    from study.cli.options import given
    from study.params import parameters
    from study.saliency import SaliencyData
    from study.scoring import channel_scores
    from study.store import write_table
    from taxonomy.equivalence import distinct
    from taxonomy.errors import PrunetaxError
    from taxonomy.spec import all_cells, parse

    if {"all", "distinct"} & set(args.signals) and len(args.signals) > 1:
        raise PrunetaxError("`--signals all` and `--signals distinct` stand alone; list ids instead to mix.")
    if args.signals == ["all"]:
        signals = all_cells()
    elif args.signals == ["distinct"]:
        signals = distinct()
    else:
        signals = [parse(s) for s in args.signals]
    _set_threads(args.threads)
    ckpt = Checkpoint.load(args.checkpoint)
    base = load_base(ckpt.arch, args.dataset, ckpt.seed, environment(args), checkpoint=args.checkpoint)
    saliency = SaliencyData.make(**given(args, parameters(SaliencyData)))
    rows, inputs = channel_scores(base, signals, seed=args.seed, saliency=saliency)
    out = write_table(Path(args.out), rows, "scores")
    print(
        f"wrote {len(rows)} scores ({len(signals)} signals x {len(rows) // max(1, len(signals))} channels) "
        f"to {out}"
    )
    if args.dump_inputs:
        torch.save(inputs, args.dump_inputs)
        print(f"wrote the {len(inputs['eval_indices'])} eval examples used to {args.dump_inputs}")
    return 0
