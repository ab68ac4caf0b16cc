"""What a running sweep prints: base models as they finish (with their accuracy), then trials
done / failed / remaining with an ETA from measured work-unit times.

The ETA is the measured compute time per trial (and per rank job) of the finished work
units, times what is left, spread over the units that run at once: it ignores Ray's start-up
and the base-model training that wall time since the start would fold in, and it does not
extrapolate from the first unit while the others are still half way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["Progress", "base_model_line", "slots"]

Printer = Callable[[str], None]


def base_model_line(key: tuple[str, str, int], path: Path, done: int, total: int, error: str | None) -> str:
    """One finished base model: its test and train accuracy and training time, or its error."""
    name = f"{key[0]}/{key[1]}/s{key[2]}"
    if error:
        return f"  [{done}/{total}] base model {name} failed: {error}"
    from study.checkpoint import Checkpoint
    from taxonomy.errors import PrunetaxError

    try:
        ckpt = Checkpoint.load(path)
    except PrunetaxError as err:  # trained, but unreadable here (e.g. a cluster without shared storage)
        return f"  [{done}/{total}] base model {name} trained; its checkpoint is not readable here: {err}"
    acc = ckpt.accuracy
    return (
        f"  [{done}/{total}] base model {name}: test accuracy {100 * acc['test']:.2f}% "
        f"(train {100 * acc['train']:.2f}%), trained in {ckpt.wall_time_s:.0f} s"
    )


def slots(resources: dict[str, float], cpus: float, gpus: float, cap: int | None) -> int:
    """How many work units run at once on a cluster with ``resources`` (Ray's totals)."""
    n = resources.get("CPU", 1.0) / cpus
    if gpus > 0:
        n = min(n, resources.get("GPU", 0.0) / gpus)
    if cap is not None:
        n = min(n, cap)
    return max(1, int(n))


class Progress:
    """Counts what finished and prints one line per finished work unit."""

    def __init__(self, total: int, printer: Printer, *, parallel: int = 1, jobs: int = 0) -> None:
        self.total, self.printer, self.parallel, self.jobs_total = total, printer, parallel, jobs
        self.ok = self.failed = self.jobs = 0
        self.compute = 0.0
        self.measured = {"trials": [0, 0.0, 0], "jobs": [0, 0.0, 0]}  # count, seconds, units
        self.start = time.perf_counter()

    def announce(self, units: int) -> None:
        """The line before the first unit starts (the sweep is not silent while units run)."""
        jobs = f" and {self.jobs_total} rank jobs" if self.jobs_total else ""
        self.printer(
            f"running {self.total - self.ok - self.failed} trials{jobs} in {units} work units, "
            f"{min(self.parallel, units)} at a time"
        )

    def add(self, result: dict) -> None:
        ok, failed, jobs = (int(result.get(k, 0)) for k in ("ok", "failed", "jobs"))
        self.ok, self.failed, self.jobs = self.ok + ok, self.failed + failed, self.jobs + jobs
        if "compute_s" in result:  # a unit that ran (not failures recorded for a dead one)
            seconds = float(result["compute_s"])
            self.compute += seconds
            kind = "jobs" if jobs else "trials"
            count = self.measured[kind]
            count[0], count[1], count[2] = count[0] + (jobs or ok + failed), count[1] + seconds, count[2] + 1
        done = self.ok + self.failed
        left = max(0, self.total - done)
        jobs_text = f"; rank jobs {self.jobs}/{self.jobs_total}" if self.jobs_total else ""
        self.printer(
            f"[{time.perf_counter() - self.start:6.0f}s] trials done {self.ok}, failed {self.failed}, "
            f"remaining {left}{jobs_text} (ETA {self.eta()})"
        )

    def eta(self) -> str:
        """Measured seconds per trial and per rank job x what is left / units running at once."""
        left = {
            "trials": max(0, self.total - self.ok - self.failed),
            "jobs": max(0, self.jobs_total - self.jobs),
        }
        work, units, unknown = 0.0, 0, False
        for kind, n in left.items():
            count, seconds, finished = self.measured[kind]
            if not n:
                continue
            if not count:
                unknown = True
                continue
            work += n * seconds / count
            units += math.ceil(n / (count / finished))  # units left at the measured unit size
        if not units:
            return "?" if unknown else "0s"
        text = f"{work / min(self.parallel, units):.0f}s"
        return f">= {text}" if unknown else text
