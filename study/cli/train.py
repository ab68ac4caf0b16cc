"""``prunetax train``: train (or reuse) a cached base model and report its accuracy."""

from __future__ import annotations

import argparse
import sys

from study.cli.types import COUNT, DEVICE, FRACTION, NONNEGATIVE, POSITIVE, TEXT, WHOLE
from study.environment import DEFAULT_CACHE

DEFAULT_CACHE_DIR = str(DEFAULT_CACHE)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a base model (cached by config hash) and print its test accuracy",
        description="Train MODEL on DATASET with SGD for seed S, deterministically, and cache the "
        "checkpoint as CACHE_DIR/<model>-<dataset>-s<seed>-<hash>.pt; an existing checkpoint with "
        "the same configuration is reused. Unset hyperparameters take the model's defaults.",
    )
    p.add_argument(
        "--model",
        type=TEXT,
        default="tiny_cnn",
        help="model name, tv:NAME or module.path:builder (see `prunetax models`; default: tiny_cnn)",
    )
    p.add_argument(
        "--dataset",
        type=TEXT,
        default="digits",
        help="dataset name, imagefolder:PATH or module.path:loader (`prunetax datasets`; default: digits)",
    )
    p.add_argument("--seed", type=WHOLE, default=0, help="initialisation / batch-order seed (default: 0)")
    p.add_argument(
        "--split-seed", type=WHOLE, help="data split seed (default: the seed: each repeat its own split)"
    )
    p.add_argument("--epochs", type=WHOLE, help="training epochs (default: the model's)")
    p.add_argument("--lr", type=POSITIVE, help="initial learning rate (default: the model's)")
    p.add_argument("--batch-size", type=COUNT, help="mini-batch size (default: the model's)")
    p.add_argument("--weight-decay", type=NONNEGATIVE, help="weight decay (default: the model's)")
    p.add_argument("--momentum", type=FRACTION, help="SGD momentum (default: the model's)")
    p.add_argument("--schedule", choices=("cosine", "step"))
    p.add_argument(
        "--augment",
        choices=("none", "crop_flip"),
        help="training augmentation (default: the dataset's; crop_flip for CIFAR)",
    )
    p.add_argument(
        "--data-root",
        type=TEXT,
        metavar="DIR",
        help="dataset folder (default: $PRUNETAX_DATA or ~/.cache/prunetax/data)",
    )
    p.add_argument(
        "--cache-dir",
        type=TEXT,
        metavar="DIR",
        default=DEFAULT_CACHE_DIR,
        help=f"checkpoint cache (default: {DEFAULT_CACHE_DIR})",
    )
    p.add_argument("--device", type=DEVICE, default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--download", action="store_true", help="download missing dataset files (online only)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    p.set_defaults(func=_train, validate=validate_train)


def validate_train(args: argparse.Namespace):  # noqa: ANN201 - a study.train.TrainConfig
    """The training configuration, resolved (names, defaults, ranges): nothing is read or written."""
    from study.cli.options import check_names
    from study.train import TrainConfig, resolve

    check_names(args.model, args.dataset)
    cfg = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        seed=args.seed,
        split_seed=args.split_seed,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        schedule=args.schedule,
        augment=args.augment,
        data_root=args.data_root,
    )
    resolve(cfg)
    return cfg


def _train(args: argparse.Namespace) -> int:
    from study.environment import Environment
    from study.preflight import Work, preflight
    from study.train import checkpoint_path, load_or_train

    cfg = validate_train(args)
    env = Environment(args.cache_dir, args.data_root, args.device, args.download)
    preflight(env, [Work(cfg.model, cfg.dataset, (cfg.seed,))])
    cached = checkpoint_path(cfg, args.cache_dir).exists()
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    ckpt, path = load_or_train(cfg, args.cache_dir, args.device, download=args.download, progress=progress)
    acc = ckpt.accuracy
    print(
        f"{ckpt.arch} on {ckpt.dataset} (seed {ckpt.seed}): test accuracy "
        f"{100 * acc['test']:.2f}% (train {100 * acc['train']:.2f}%, eval {100 * acc['eval']:.2f}%)"
    )
    verb = "reused cached checkpoint, trained" if cached else "trained"
    print(f"{verb} in {ckpt.wall_time_s:.1f} s on {ckpt.device}")
    print(f"checkpoint: {path}")
    return 0
