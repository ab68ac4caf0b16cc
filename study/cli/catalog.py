"""``prunetax models`` and ``prunetax datasets``: what can be named, with input shapes."""

from __future__ import annotations

import argparse

from study.cli.types import TEXT


def add(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "models",
        help="list the models (registry, tv:NAME, module.path:builder) and the inputs they take",
        description="List the registered models with the smallest images they take and their default "
        "training, and the other ways to name a model: any torchvision classifier as tv:NAME, and a "
        "model of your own as module.path:builder (builder(in_channels, num_classes, image_size)).",
    )
    m.add_argument("--tv", action="store_true", help="also list every torchvision classifier (tv:NAME)")
    m.set_defaults(func=_models)
    d = sub.add_parser(
        "datasets",
        help="list the datasets (registry, imagefolder:PATH, module.path:loader) with their shapes",
        description="List the registered datasets with their image shape (channels x height x width), "
        "classes, default train / eval / test sizes and whether their files are present, and the other "
        "ways to name a dataset: imagefolder:PATH and module.path:loader.",
    )
    d.add_argument(
        "--data-root", type=TEXT, help="dataset folder (default $PRUNETAX_DATA or ~/.cache/prunetax/data)"
    )
    d.set_defaults(func=_datasets)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    return "\n".join(
        ("  ".join(r[k].ljust(widths[k]) for k in range(len(widths))) + "  " + r[-1]).rstrip() for r in rows
    )


def _models(args: argparse.Namespace) -> int:
    from study import models
    from study.models.tv import tv_names

    rows = [("model", "input (images C x H x W)", "training (default)", "summary")]
    for name in models.names():
        e = models.entry(name)
        hp = e.hyperparams
        size = max(e.min_image_size, 1)
        rows.append(
            (
                name,
                f"any C, >= {size}x{size}",
                f"{hp.epochs} epochs, lr {hp.lr:g}, batch {hp.batch_size}",
                e.summary,
            )
        )
    print(_table(rows))
    tv = tv_names()
    print(
        f"\nalso: tv:NAME for {len(tv)} torchvision classifiers (e.g. tv:{tv[0]}; `--tv` lists them), and "
        "module.path:builder for a model of your own:\n"
        "  builder(in_channels, num_classes, image_size) -> nn.Module."
    )
    if args.tv:
        print("\n".join(f"  tv:{n}" for n in tv))
    return 0


def _shape(name: str, root: str | None) -> tuple[str, str, str]:
    """(C x H x W, classes, train/eval/test) of a dataset whose files are here; else why not."""
    from study import data
    from taxonomy.errors import PrunetaxError

    try:
        splits = data.load(name, root)
    except PrunetaxError:
        return "?", "?", f"files not found under {data.default_root() if root is None else root}"
    size = splits.sizes()
    shape = "x".join(map(str, splits.train.x.shape[1:]))
    return shape, str(splits.num_classes), f"{size['train']} / {size['eval']} / {size['test']}"


def _datasets(args: argparse.Namespace) -> int:
    from study import data

    rows = [("dataset", "shape", "classes", "train / eval / test", "summary")]
    for name in data.names():
        rows.append((name, *_shape(name, args.data_root), data.entry(name).summary))
    print(_table(rows))
    print(
        "\nalso: imagefolder:PATH (PATH/<class>/<images>, 32x32 by default) and module.path:loader for a "
        "dataset of your own, loader() -> (images [N, C, H, W], labels [N])."
    )
    return 0
