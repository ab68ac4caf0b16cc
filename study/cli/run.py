"""``prunetax run`` (single trials) and ``prunetax scores`` (per-channel scores).

Each command validates its arguments (:func:`validate_run`, :func:`validate_scores`: no
environment needed, nothing written), then checks the environment
(:mod:`study.preflight`), and only then runs and writes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from study.cli.types import COUNT, DEVICE, TEXT, WHOLE, ids
from study.environment import DEFAULT_CACHE

__all__ = ["add", "protocol_args", "protocol_from_args", "signal_option", "signal_names", "context_args"]
__all__ += ["environment", "validate_run", "validate_scores"]


def protocol_args(p: argparse.ArgumentParser) -> None:
    """The protocol options, taken from the protocol registry (one flag per parameter)."""
    from study.cli.options import add_param_options
    from study.protocols import PROTOCOLS, all_parameters, owners

    g = p.add_argument_group("protocol (each option applies to the protocols named in brackets)")
    summary = "; ".join(f"{n}: {PROTOCOLS.get(n).summary}" for n in PROTOCOLS)
    summary = summary.replace("%", "%%")  # argparse formats help texts
    g.add_argument("--protocol", default="sensitivity", type=TEXT, help=f"{summary} (default: sensitivity)")
    params = all_parameters().values()
    notes = {
        q.name: "all" if len(owners(q.name)) == len(PROTOCOLS) else ", ".join(owners(q.name)) for q in params
    }
    add_param_options(g, params, notes)


def protocol_from_args(args: argparse.Namespace):  # noqa: ANN201 - a study.protocols.Protocol
    """The protocol the options describe; an option of another protocol is an error."""
    from study.cli.options import given
    from study.preflight import flag
    from study.protocols import all_parameters, make_protocol
    from taxonomy.errors import PrunetaxError

    try:
        return make_protocol(args.protocol, **given(args, all_parameters().values()))
    except PrunetaxError as err:  # name the option at fault
        raise PrunetaxError(f"{flag(err.key or 'protocol')}: {err}", key=err.key) from None


def signal_option(
    p: argparse.ArgumentParser, default: str | None = None, what: str = "to run: id, alias, random or oracle"
) -> None:
    """``--signal X`` (repeatable, and ``--signal X,Y``): the one spelling of a signal list."""
    help_text = f"signal(s) {what}; repeat the option or separate with commas"
    p.add_argument(
        "--signal",
        action="append",
        type=ids,
        required=default is None,
        metavar="ID[,ID]",
        help=help_text + (f" (default {default})" if default else ""),
    )


def signal_names(values: list[list[str]] | None, default: tuple[str, ...] = ()) -> list[str]:
    """The flattened ``--signal`` values."""
    return [name for group in values or [] for name in group] or list(default)


def signal_specs(names: list[str]) -> list:
    """The signals ``--signal`` names (an alias and its id together are an error)."""
    from study.sweep.signals import check_unique
    from taxonomy.errors import PrunetaxError

    try:
        return check_unique(names, "--signal")
    except PrunetaxError as err:
        text = str(err)
        raise PrunetaxError(
            text if text.startswith("`--signal`") else f"--signal: {text}", key="signal"
        ) from None


def context_args(p: argparse.ArgumentParser) -> None:
    """Where things are: cache, data, device, threads, downloads."""
    g = p.add_argument_group("where things are")
    g.add_argument(
        "--cache-dir",
        type=TEXT,
        default=str(DEFAULT_CACHE),
        help=f"base-model cache (default {DEFAULT_CACHE})",
    )
    g.add_argument(
        "--data-root", type=TEXT, help="dataset folder (default $PRUNETAX_DATA or ~/.cache/prunetax/data)"
    )
    g.add_argument("--device", type=DEVICE, default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    g.add_argument(
        "--threads",
        type=COUNT,
        default=1,
        help="torch CPU threads (default 1: small networks run fastest single-threaded, "
        "and parallel trials must not oversubscribe the cores)",
    )
    g.add_argument("--download", action="store_true", help="download missing datasets (online machines only)")


def _saliency_args(p: argparse.ArgumentParser) -> None:
    from study.cli.options import add_param_options
    from study.params import parameters
    from study.saliency import SaliencyData

    add_param_options(p.add_argument_group("saliency data"), parameters(SaliencyData))


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run pruning trials of one model/dataset and store them",
        description="Prune a trained base model (trained and cached on first use) with one or more signals "
        "under a protocol, write each trial to the results store, and print its headline figure: the "
        "weight sparsity reached before test accuracy drops 5 points. Every argument and the environment "
        "(data, device, model/data fit, store) are checked before anything runs.",
    )
    p.add_argument("--model", type=TEXT, default="tiny_cnn", help="model name (see `prunetax models`)")
    p.add_argument("--dataset", type=TEXT, default="digits", help="dataset name (see `prunetax datasets`)")
    signal_option(p)
    p.add_argument(
        "--seed", type=WHOLE, default=0, help="trial seed: eval batches, random signal, retraining"
    )
    p.add_argument(
        "--random-draws",
        type=COUNT,
        default=5,
        help="independent draws of the random signal (its distribution is the baseline; default 5)",
    )
    p.add_argument("--base-seed", type=WHOLE, default=0, help="seed of the base model's training")
    p.add_argument(
        "--store", type=TEXT, default="results/store", help="results store folder (default results/store)"
    )
    p.add_argument("--force", action="store_true", help="rerun trials already in the store")
    protocol_args(p)
    context_args(p)
    p.set_defaults(func=_run, validate=validate_run)
    _add_scores(sub)


def _add_scores(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "scores",
        help="write every channel's score for signals on the unpruned network",
        description="Score every conv channel of a trained network with the requested signals and write "
        "one row per (signal, layer, channel) to a Parquet file, with the seed and eval examples used.",
    )
    s.add_argument("--checkpoint", type=TEXT, required=True, help="a checkpoint written by `prunetax train`")
    s.add_argument(
        "--dataset", type=TEXT, help="the dataset the checkpoint was trained on (default: the one it names)"
    )
    signal_option(s, "all", "to score: `all` or `distinct` alone, or ids, aliases, random, oracle")
    s.add_argument("--signals", nargs="+", type=TEXT, help=argparse.SUPPRESS)  # deprecated spelling
    s.add_argument("--seed", type=WHOLE, default=0, help="chooses the eval examples")
    _saliency_args(s)
    s.add_argument("--out", type=TEXT, required=True, help="output Parquet file")
    s.add_argument(
        "--dump-inputs", type=TEXT, metavar="FILE.pt", help="also save the eval tensors and labels used"
    )
    context_args(s)
    s.set_defaults(func=_scores, validate=validate_scores)


def environment(args: argparse.Namespace):  # noqa: ANN201 - a study.environment.Environment
    from study.environment import Environment

    return Environment(args.cache_dir, args.data_root, args.device, args.download)


@dataclass
class RunRequest:
    """What ``prunetax run`` was asked to do, validated."""

    specs: list
    protocol: object


def validate_run(args: argparse.Namespace) -> RunRequest:
    """The trials ``run`` asks for; any bad argument is a :class:`PrunetaxError` naming its option."""
    from study.cli.options import check_names
    from study.trial import TrialSpec
    from taxonomy.errors import PrunetaxError

    protocol = protocol_from_args(args)
    signals = signal_specs(signal_names(args.signal))
    check_names(args.model, args.dataset)
    try:
        for signal in signals:  # e.g. a protocol that runs only `random`
            protocol.check_signal(signal)
    except PrunetaxError as err:
        raise PrunetaxError(f"--signal: {err}", key="signal") from None
    specs = [
        TrialSpec(args.model, args.dataset, s.id, protocol, args.seed, args.base_seed, draw)
        for s in signals
        for draw in range(args.random_draws if s.randomised else 1)
    ]
    return RunRequest(specs, protocol)


def _label(signal: str, draw: int) -> str:
    return f"{signal} (draw {draw})" if signal == "random" else signal


def _run(args: argparse.Namespace) -> int:
    import torch

    from study.execute import execute, pending
    from study.preflight import Work, preflight
    from study.store import Store

    request = validate_run(args)
    protocol = request.protocol
    work = Work(args.model, args.dataset, (args.base_seed,), protocol.saliency, protocol)
    preflight(environment(args), [work], folders={"store": args.store})
    torch.set_num_threads(args.threads)
    store = Store(args.store)
    skip = () if args.force else ("ok",)
    todo = pending(request.specs, store, skip)
    for spec in request.specs:
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


def validate_scores(args: argparse.Namespace) -> list:
    """The signals ``scores`` asks for, and its output paths checked; nothing is read or written."""
    from study.preflight import check_file
    from taxonomy.equivalence import distinct
    from taxonomy.errors import PrunetaxError
    from taxonomy.spec import all_cells

    names = signal_names(args.signal) + list(args.signals or [])
    if args.signals:
        print(
            "prunetax scores: note: `--signals X Y` is deprecated; use `--signal X --signal Y`.",
            file=sys.stderr,
        )
    names = names or ["all"]
    groups = {n.strip().lower() for n in names} & {"all", "distinct"}
    if groups and len(names) > 1:
        raise PrunetaxError(
            "--signal: `all` and `distinct` stand alone; list ids instead to mix.", key="signal"
        )
    groups_or_ids = {"all": all_cells, "distinct": distinct}
    signals = groups_or_ids[groups.pop()]() if groups else signal_specs(names)
    check_file(args.out, "out")
    if args.dump_inputs:
        check_file(args.dump_inputs, "dump_inputs")
        if _same(args.dump_inputs, args.out):
            raise PrunetaxError(
                "--dump-inputs must differ from --out; both name one file.", key="dump_inputs"
            )
    return signals


def _same(a: str, b: str) -> bool:
    from pathlib import Path

    return Path(a).expanduser().absolute() == Path(b).expanduser().absolute()


def _scores(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from study.base_model import load_base
    from study.checkpoint import Checkpoint
    from study.cli.options import given
    from study.params import parameters
    from study.preflight import check_device, check_examples
    from study.saliency import SaliencyData
    from study.scoring import channel_scores
    from study.store import write_table
    from taxonomy.errors import PrunetaxError

    signals = validate_scores(args)
    saliency = SaliencyData.make(**given(args, parameters(SaliencyData)))
    check_device(args.device)
    torch.set_num_threads(args.threads)
    ckpt = Checkpoint.load(args.checkpoint)
    try:
        ckpt.build_model()  # the weights fit the architecture it names
    except PrunetaxError as err:
        raise PrunetaxError(f"--checkpoint {args.checkpoint}: {err}", key="checkpoint") from None
    base = load_base(
        ckpt.arch, args.dataset or ckpt.dataset, ckpt.seed, environment(args), checkpoint=args.checkpoint
    )
    check_examples(saliency, base.splits, ckpt.dataset)
    rows, inputs = channel_scores(base, signals, seed=args.seed, saliency=saliency)
    out = write_table(Path(args.out), rows, "scores")
    print(
        f"wrote {len(rows)} scores ({len(signals)} signals x {len(rows) // max(1, len(signals))} channels) "
        f"to {out}"
    )
    if args.dump_inputs:
        _save_atomic(inputs, Path(args.dump_inputs))
        print(f"wrote the {len(inputs['eval_indices'])} eval examples used to {args.dump_inputs}")
    return 0


def _save_atomic(obj: object, path) -> None:  # noqa: ANN001 - a Path
    """``torch.save`` to a hidden temp file in the same folder, then ``os.replace``: never half-written."""
    import os

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
