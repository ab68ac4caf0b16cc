"""``prunetax run`` (single trials) and ``prunetax scores`` (per-channel scores)."""

from __future__ import annotations

import argparse
import sys


def _protocol_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("protocol")
    g.add_argument(
        "--protocol",
        default="sensitivity",
        help="sensitivity | retrain | characterise | oneshot (default: sensitivity)",
    )
    g.add_argument(
        "--channels-per-step",
        type=float,
        default=1,
        help="units pruned per step: a count >= 1 or a fraction < 1 of all units (default 1)",
    )
    g.add_argument("--test-interval", type=int, default=1, help="evaluate test accuracy every N steps")
    g.add_argument("--stop-acc", type=float, help="stop when test accuracy (%%) falls below this")
    g.add_argument("--target-sparsity", type=float, help="stop at this weight sparsity (%%)")
    g.add_argument("--targets", help="oneshot: comma-separated target sparsities, e.g. 10,20,40")
    g.add_argument("--retrain-steps", type=int, help="SGD steps per prune (retrain/characterise)")
    g.add_argument("--tap", default="output", help="activation tap point: output | conv")
    g.add_argument("--eval-batches", type=int, default=2, help="saliency batches per step (default 2)")
    g.add_argument("--eval-batch-size", type=int, default=128, help="examples per saliency batch (128)")


def _context_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where things are")
    g.add_argument("--cache-dir", default="results/models", help="base-model cache (default results/models)")
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
    p.add_argument("--base-seed", type=int, default=0, help="seed of the base model's training")
    p.add_argument("--store", default="results/store", help="results store folder (default results/store)")
    p.add_argument("--force", action="store_true", help="rerun trials already in the store")
    _protocol_args(p)
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
    s.add_argument("--tap", default="output", help="activation tap point: output | conv")
    s.add_argument("--seed", type=int, default=0, help="chooses the eval examples")
    s.add_argument("--eval-batches", type=int, default=2)
    s.add_argument("--eval-batch-size", type=int, default=128)
    s.add_argument("--out", required=True, help="output Parquet file")
    s.add_argument("--dump-inputs", metavar="FILE.pt", help="also save the eval tensors and labels used")
    _context_args(s)
    s.set_defaults(func=_scores)


def _protocol(args: argparse.Namespace):  # noqa: ANN202
    from study.protocols import Protocol
    from taxonomy.errors import PrunetaxError

    targets = ()
    if args.targets:
        try:
            targets = tuple(float(t) for t in args.targets.split(","))
        except ValueError:
            raise PrunetaxError(
                f"`--targets` must be comma-separated numbers; got {args.targets!r}."
            ) from None
    return Protocol(
        name=args.protocol,
        channels_per_step=args.channels_per_step,
        test_interval=args.test_interval,
        stop_acc=args.stop_acc,
        target_sparsity=args.target_sparsity,
        targets=targets,
        retrain_steps=args.retrain_steps,
        tap=args.tap,
        eval_batches=args.eval_batches,
        eval_batch_size=args.eval_batch_size,
    )


def _set_threads(n: int) -> None:
    import torch

    from taxonomy.errors import PrunetaxError

    if n < 1:
        raise PrunetaxError(f"`--threads` must be >= 1; got {n}.")
    torch.set_num_threads(n)


def _run(args: argparse.Namespace) -> int:
    from study.store import Store
    from study.trial import TrialSpec, run_trials

    protocol = _protocol(args)
    _set_threads(args.threads)
    specs = [TrialSpec(args.model, args.dataset, s, protocol, args.seed, args.base_seed) for s in args.signal]
    for spec in specs[:1]:
        spec.validate_names()
    store = Store(args.store)
    done = set() if args.force else store.done()
    todo = [s for s in specs if s.run_key not in done]
    for spec in specs:
        if spec.run_key in done:
            print(f"{spec.signal}: already stored ({spec.run_key}); use --force to rerun")
    failed = 0

    def report(record) -> None:  # noqa: ANN001
        nonlocal failed
        store.write_trial(record.trial, record.steps)
        t = record.trial
        if not record.ok:
            failed += 1
            print(f"{t['signal']}: FAILED: {t['error']}", file=sys.stderr)
            return
        print(
            f"{t['signal']}: sparsity at a 5-point drop {t['sparsity_at_5']:.2f}% "
            f"(1: {t['sparsity_at_1']:.2f}, 2: {t['sparsity_at_2']:.2f}, 10: {t['sparsity_at_10']:.2f}); "
            f"reference {t['reference_acc']:.2f}%, {t['n_steps']} steps, {t['wall_s']:.1f} s, "
            f"run_key {t['run_key']}"
        )

    run_trials(
        todo,
        cache_dir=args.cache_dir,
        data_root=args.data_root,
        device=args.device,
        download=args.download,
        on_record=report,
    )
    if todo:
        print(f"stored in {store.root}")
    return 1 if failed else 0


def _scores(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from study.scoring import channel_scores
    from study.store import write_table
    from study.train import load_checkpoint
    from study.trial import load_base
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
    ckpt = load_checkpoint(args.checkpoint)
    base = load_base(
        ckpt["arch"],
        args.dataset,
        ckpt["seed"],
        checkpoint=args.checkpoint,
        data_root=args.data_root,
        device=args.device,
        download=args.download,
    )
    rows, inputs = channel_scores(
        base,
        signals,
        seed=args.seed,
        tap=args.tap,
        eval_batches=args.eval_batches,
        eval_batch_size=args.eval_batch_size,
    )
    out = write_table(Path(args.out), rows, "scores")
    print(
        f"wrote {len(rows)} scores ({len(signals)} signals x {len(rows) // max(1, len(signals))} channels) "
        f"to {out}"
    )
    if args.dump_inputs:
        torch.save(inputs, args.dump_inputs)
        print(f"wrote the {len(inputs['eval_indices'])} eval examples used to {args.dump_inputs}")
    return 0
