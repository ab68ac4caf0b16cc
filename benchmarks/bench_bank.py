"""Benchmark of the signal bank on ResNet-20-sized statistics (SPEC §2).

Measures side by side, in one run:

(a) all signals of the space (630) scored with one ``taxonomy.bank.score`` call (shared work);
(b) the same signals with one bank call each (no sharing across signals), timed on
    an even sample of the cells (``--single``) and scaled to all of them;
(c) the loop reference of ``tests/reference_signals.py``: far too slow at full size, so it
    is timed on a reduced problem (``--ref-n`` examples, one conv per stage, a sample of
    signals covering every (input, pointwise) pair) and extrapolated linearly in the
    number of element visits (channels x elements x examples it loops over) to the full
    size and all signals.

Layer set: ResNet-20 for CIFAR (3x32x32 input) = 19 bias-free 3x3 convs: 7 with 16
channels at 32x32, 6 with 32 at 16x16, 6 with 64 at 8x8 (688 channels), plus by default
the two 1x1 projection shortcuts of the option-B variant (32 at 16x16, 64 at 8x8), which
brings it to 21 layers and 784 channels (~800); ``--no-shortcuts`` gives the 19-layer set.
Weight elements per channel: E = C_in*k*k (+1 with ``--bias``). Float32, random data.

Usage: ``.venv/bin/python benchmarks/bench_bank.py [--n 256] [--out bench.csv]``
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root: `tests` is a package

from taxonomy.bank import score  # noqa: E402
from taxonomy.components import Input, Pointwise  # noqa: E402
from taxonomy.equivalence import rule_of  # noqa: E402
from taxonomy.spec import SignalSpec, all_cells  # noqa: E402
from taxonomy.statistics import InputStats, LayerStats  # noqa: E402
from tests.reference_signals import reference_score  # noqa: E402

# (name, C_in, C_out, kernel, output H*W)
Conv = tuple[str, int, int, int, int]


def resnet20_convs(shortcuts: bool = True) -> list[Conv]:
    """The prunable convs of ResNet-20 (CIFAR), with the option-B 1x1 shortcuts if asked."""
    convs: list[Conv] = [("conv1", 3, 16, 3, 32 * 32)]
    c_in = 16
    for stage, (width, hw) in enumerate([(16, 32 * 32), (32, 16 * 16), (64, 8 * 8)], start=1):
        for block in range(3):
            convs.append((f"layer{stage}.{block}.conv1", c_in, width, 3, hw))
            convs.append((f"layer{stage}.{block}.conv2", width, width, 3, hw))
            if shortcuts and c_in != width:
                convs.append((f"layer{stage}.{block}.shortcut", c_in, width, 1, hw))
            c_in = width
    return convs


def build_layers(
    convs: Sequence[Conv], n: int, bias: bool, dtype: torch.dtype, seed: int = 0
) -> list[LayerStats]:
    """Random full statistics (value, grad, hess for both inputs) of each conv, all channels active."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen, dtype=dtype)

    layers = []
    for name, c_in, c, k, hw in convs:
        e = c_in * k * k + int(bias)
        count = torch.full((c,), c_in * k * k)
        w = {"value": randn(1, c, e), "grad": randn(n, c, e), "hess": randn(n, c, e).abs_()}
        weight = InputStats(w, count, count.clone())
        act = randn(n, c, hw).clamp_(min=0)  # post-ReLU maps: non-negative, with zeros
        hw_count = torch.full((c,), hw)
        a = {"value": act, "grad": randn(n, c, hw), "hess": randn(n, c, hw).abs_()}
        activation = InputStats(a, hw_count, hw_count.clone())
        removed = torch.full((c,), c_in * k * k + c * k * k)
        macs = torch.full((c,), (c_in * k * k + c * k * k) * hw)  # same-size maps: own and next conv
        layers.append(LayerStats(name, weight, activation, removed, torch.ones(c, dtype=torch.bool), macs))
    return layers


def element_visits(spec: SignalSpec, convs: Sequence[Conv], n: int, bias: bool) -> int:
    """Elements the reference loops over for one signal: sum over layers of C * E * examples."""
    total = 0
    for _, c_in, c, k, hw in convs:
        weight = spec.input is Input.WEIGHT
        data_free = weight and spec.pointwise in (Pointwise.VALUE, Pointwise.APOZ, Pointwise.CENTERED)
        e = c_in * k * k + int(bias) if weight else hw
        total += c * e * (1 if data_free else n)
    return total


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_bank(convs: Sequence[Conv], args: argparse.Namespace) -> dict[str, float]:
    """(a) and (b) at full size; the statistics are freed on return."""
    cells = all_cells()
    start = time.perf_counter()
    layers = build_layers(convs, args.n, args.bias, torch.float32, args.seed)
    build_s = time.perf_counter() - start
    data_mib = (
        sum(
            t.numel() * t.element_size()
            for layer in layers
            for s in (layer.weight, layer.activation)
            for t in s.tensors.values()
        )
        / 2**20
    )
    rss_data = peak_rss_mib()
    print(f"statistics {data_mib:.0f} MiB (built in {build_s:.1f} s)", file=sys.stderr)

    score(cells[:2], layers[:1])  # warm-up: first-call overheads out of the timings
    batched_s = timed(lambda: score(cells, layers), args.repeat)
    rss_batched = peak_rss_mib()
    print(f"(a) batched: {batched_s:.2f} s", file=sys.stderr)

    single = cells[:: max(1, len(cells) // max(1, args.single))]
    single_s = timed(lambda: [score([spec], layers) for spec in single])
    print(f"(b) one call per signal: {single_s:.1f} s for {len(single)} signals", file=sys.stderr)
    return dict(
        batched_s=batched_s,
        single_s=single_s,
        single_count=len(single),
        data_mib=data_mib,
        rss_data=rss_data,
        rss_batched=rss_batched,
    )


def time_reference(convs: Sequence[Conv], args: argparse.Namespace) -> dict[str, float]:
    """(c): the loop reference on one conv per stage at N = ``ref_n``, extrapolated.

    Every (input, pointwise) pair gets its own rate (seconds per element visit) from
    ``ref_per_pair`` sampled signals; each signal of the space then costs its pair's rate
    times its element visits at full size.
    """
    cells, rng = all_cells(), random.Random(args.seed)
    ref_convs = [conv for conv in convs if conv[0].endswith("2.conv2") or conv[0] == "conv1"][-3:]
    layers = build_layers(ref_convs, args.ref_n, args.bias, torch.float32, args.seed)
    pairs: dict[tuple[Input, Pointwise], list[SignalSpec]] = {}
    for spec in cells:
        pairs.setdefault((spec.input, spec.pointwise), []).append(spec)
    rate: dict[tuple[Input, Pointwise], float] = {}
    sample_s, max_rel_err, sampled = 0.0, 0.0, 0
    for key, specs in pairs.items():
        sample = rng.sample(specs, min(args.ref_per_pair, len(specs)))
        seconds = 0.0
        for spec in sample:
            start = time.perf_counter()
            ref = reference_score(spec, layers)
            seconds += time.perf_counter() - start
            if rule_of(spec) == ["4e"]:  # 0 in exact arithmetic: both give rounding noise (no error)
                continue
            err = (score([spec], layers)[0].double() - ref).abs().max() / ref.abs().max().clamp(min=1e-30)
            max_rel_err = max(max_rel_err, err.item())
        sampled += len(sample)
        sample_s += seconds
        rate[key] = seconds / sum(element_visits(s, ref_convs, args.ref_n, args.bias) for s in sample)
    full_s = sum(rate[(s.input, s.pointwise)] * element_visits(s, convs, args.n, args.bias) for s in cells)
    print(
        f"(c) reference: {sample_s:.1f} s for {sampled} signals on {len(ref_convs)} layers, "
        f"N={args.ref_n}; bank vs reference max relative error {max_rel_err:.1e} (float32)",
        file=sys.stderr,
    )
    return dict(full_s=full_s, sample_s=sample_s, sampled=sampled, layers=len(ref_convs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=256, help="evaluation examples N (default 256)")
    parser.add_argument(
        "--no-shortcuts",
        action="store_true",
        help="the 19 convs of ResNet-20 only (688 channels), no 1x1 shortcuts",
    )
    parser.add_argument("--layers", type=int, default=None, help="keep only the first LAYERS convs")
    parser.add_argument("--bias", action="store_true", help="convs with a bias (E = C_in*k*k + 1)")
    parser.add_argument("--repeat", type=int, default=2, help="repeats of the batched call (median)")
    parser.add_argument(
        "--single",
        type=int,
        default=96,
        help="signals timed one call each, an even sample of the cells (every "
        "CELLS/SINGLE-th of the 630, so every (input, pointwise) pair is covered); fewer than all "
        "are extrapolated linearly (default 96, so the run stays under ~3 minutes; "
        "630 measures them all, several minutes more at N=256 on 2 cores)",
    )
    parser.add_argument("--ref-n", type=int, default=2, help="examples N for the reference (default 2)")
    parser.add_argument(
        "--ref-per-pair",
        type=int,
        default=2,
        help="reference signals timed per (input, pointwise) pair (default 2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1, reproducible on a shared machine: "
        "oversubscribed torch threads were 3-60x slower here; 0 = torch's default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as CSV here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    convs = resnet20_convs(shortcuts=not args.no_shortcuts)[: args.layers]
    channels = sum(c for _, _, c, _, _ in convs)
    print(
        f"layers {len(convs)}, channels {channels}, N {args.n}, float32, "
        f"torch threads {torch.get_num_threads()}",
        file=sys.stderr,
    )
    bank = time_bank(convs, args)
    ref = time_reference(convs, args)

    n_cells = len(all_cells())
    single_full_s = bank["single_s"] * n_cells / bank["single_count"]
    single_how = (
        "measured"
        if bank["single_count"] == n_cells
        else f"{bank['single_count']} calls measured, x{n_cells / bank['single_count']:.1f}"
    )
    ref_how = (
        f"extrapolated from {ref['sampled']} signals, {ref['layers']} layers, N={args.ref_n} "
        f"({ref['sample_s']:.1f} s)"
    )
    rows = [
        (f"(a) bank, one call, {n_cells} signals", bank["batched_s"], f"measured, median of {args.repeat}"),
        (f"(b) bank, {n_cells} calls of 1 signal", single_full_s, single_how),
        (f"(c) loop reference, {n_cells} signals", ref["full_s"], ref_how),
    ]
    title = (
        f"Signal bank, ResNet-20-sized: {len(convs)} convs, {channels} channels, N={args.n}, "
        f"float32, {torch.get_num_threads()} threads"
    )
    print(f"\n{title}\n")
    print("| method | time (s) | how | vs (a) |")
    print("|---|---:|---|---:|")
    for name, seconds, how in rows:
        print(f"| {name} | {seconds:,.2f} | {how} | {seconds / bank['batched_s']:,.1f}x |")
    print(
        f"\nPeak RSS: {bank['rss_data']:,.0f} MiB after building the statistics "
        f"({bank['data_mib']:,.0f} MiB of tensors), {bank['rss_batched']:,.0f} MiB after the batched "
        f"calls, {peak_rss_mib():,.0f} MiB at the end."
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                [
                    "method",
                    "seconds",
                    "how",
                    "ratio_to_batched",
                    "layers",
                    "channels",
                    "n",
                    "threads",
                    "peak_rss_mib",
                ]
            )
            for name, seconds, how in rows:
                writer.writerow(
                    [
                        name,
                        f"{seconds:.4f}",
                        how,
                        f"{seconds / bank['batched_s']:.2f}",
                        len(convs),
                        channels,
                        args.n,
                        torch.get_num_threads(),
                        f"{peak_rss_mib():.0f}",
                    ]
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
