"""The ``runs`` view: a tidy table of every step with the trial it belongs to.

``steps`` rows carry only a ``run_key``, so on their own they cannot say which model,
signal or seed a curve is. ``runs`` joins each step row to the identifying columns of its
trial. Both sides are first deduplicated like :func:`study.store.load` (the newest trial
row per run_key, and only the steps of the newest write), so a rerun never doubles a
curve. Steps whose trial has no row (a trial whose ``trials`` row was never written or
was set aside) are left out: a trial counts as stored only once its row exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from study.store.schema import STEPS, TRIALS

__all__ = ["VIEWS", "RUNS", "RUN_COLUMNS", "read_runs"]

RUN_COLUMNS = (
    "model", "dataset", "protocol", "signal", "sig_input", "sig_pointwise", "sig_reduction",
    "sig_scaling", "sig_class", "seed", "base_seed", "draw", "aggregation", "tap",
    "trial_version", "status", "reference_acc",
)  # fmt: skip
"""``trials`` columns that ``runs`` adds to every step row (after ``run_key``)."""

RUNS = pa.schema(
    [TRIALS.field("run_key"), *(TRIALS.field(c) for c in RUN_COLUMNS), *list(STEPS)[1:]],
    metadata={b"prunetax_view": b"runs"},
)
"""Schema of the ``runs`` view: ``run_key``, the trial columns, then every steps column."""

VIEWS: dict[str, pa.Schema] = {"runs": RUNS}
"""Read-only views over the tables: ``load(root, name)`` and ``store export --table name``."""


def read_runs(
    root: str | Path,
    columns: Sequence[str] | None = None,
    filters: pc.Expression | Sequence | None = None,
) -> pa.Table:
    """The ``runs`` view of the store at ``root``, sorted by run_key and step.

    ``columns`` and ``filters`` work as in :func:`study.store.load` and may name any
    column of :data:`RUNS` (the filter is applied after the join).
    """
    from study.store.read import read_table
    from taxonomy.errors import invalid

    wanted = list(RUNS.names if columns is None else columns)
    for name in wanted:
        if name not in RUNS.names:
            raise invalid("columns", name, RUNS.names, hint="(columns of the 'runs' view)")
    expr = filters if isinstance(filters, pc.Expression) or not filters else pq.filters_to_expression(filters)
    if filters and not isinstance(filters, pc.Expression):
        dnf = [filters] if isinstance(filters[0], tuple) else list(filters)
        for name in {f[0] for conj in dnf for f in conj} - set(RUNS.names):
            raise invalid("filters column", name, RUNS.names)
    steps = read_table(root, "steps")
    trials = read_table(root, "trials", ["run_key", *RUN_COLUMNS])
    joined = steps.join(trials, "run_key", join_type="inner", coalesce_keys=True)
    joined = joined.select(RUNS.names).cast(RUNS).sort_by([("run_key", "ascending"), ("step", "ascending")])
    if expr is not None:
        joined = joined.filter(expr)
    return joined.select(wanted)
