"""``prunetax train``: train (or reuse) a cached base model and report its accuracy."""

from __future__ import annotations

import argparse
import sys

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
        default="tiny_cnn",
        help="registered model name or tv:<torchvision name> (default: tiny_cnn)",
    )
    p.add_argument(
        "--dataset", default="digits", help="registered dataset name or imagefolder:PATH (default: digits)"
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation / batch-order seed (default: 0)")
    p.add_argument("--split-seed", type=int, help="data split seed (default: the seed: each repeat its own split)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="initial learning rate")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--schedule", choices=("cosine", "step"))
    p.add_argument(
        "--augment",
        choices=("none", "crop_flip"),
        help="training augmentation (default: the dataset's; crop_flip for CIFAR)",
    )
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="dataset folder (default: $PRUNETAX_DATA or ~/.cache/prunetax/data)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=DEFAULT_CACHE_DIR,
        help=f"checkpoint cache (default: {DEFAULT_CACHE_DIR})",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--download", action="store_true", help="download missing dataset files (online only)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from study.train import TrainConfig, checkpoint_path, load_or_train

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
