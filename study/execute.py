"""Running trials: a pure function from specs to records, and the one "skip what is
stored, run, write" path that ``prunetax run`` and every sweep work unit use.

Trials that differ only in their signal form one *work unit*: one base model, one set-up,
one protocol run in lockstep (:mod:`study.trajectory`). A failure of the set-up fails every
trial of the unit; a failing signal fails only its own trial. Nothing here knows Ray.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime

from study.base_model import Base, load_base
from study.environment import LOCAL, Environment
from study.groups import build_groups
from study.trajectory import TIMINGS, Setup, TrajectoryResult
from study.trial import TrialRecord, TrialSpec, failed_record, headline, trial_row
from taxonomy.equivalence import Context
from taxonomy.spec import parse

__all__ = ["run_trials", "make_setup", "pending", "execute", "work_units"]

OnRecord = Callable[[TrialRecord], None] | None


def work_units(specs: Sequence[TrialSpec]) -> list[list[TrialSpec]]:
    """Specs grouped by unit key (same model, data, seeds and protocol), in first-seen order."""
    units: dict[str, list[TrialSpec]] = {}
    for spec in specs:
        units.setdefault(spec.unit_key, []).append(spec)
    return list(units.values())


def make_setup(spec: TrialSpec, base: Base) -> Setup:
    """The set-up of ``spec``'s work unit: groups, saliency batches, data, seed."""
    splits = base.splits
    batches, examples = spec.protocol.saliency.draw(
        splits.eval.x, splits.eval.y, splits.indices["eval"], spec.seed
    )
    return Setup(
        model=base.model,
        groups=build_groups(base.model, tuple(splits.train.x.shape[1:])),
        eval_batches=batches,
        test=(splits.test.x, splits.test.y),
        train=(splits.train.x, splits.train.y),
        reference_acc=base.reference_acc,
        seed=spec.seed,
        model_name=spec.model,
        eval_examples=examples,
    )


def run_trials(
    specs: Sequence[TrialSpec], env: Environment = LOCAL, on_record: OnRecord = None
) -> list[TrialRecord]:
    """Run ``specs`` (work units in lockstep); failures become ``failed`` records.

    ``on_record`` is called as soon as each trial ends (to write it to a store).
    """
    records = []
    for unit in work_units(specs):
        for record in _run_unit(unit, env):
            records.append(record)
            if on_record is not None:
                on_record(record)
    return records


def _run_unit(unit: list[TrialSpec], env: Environment) -> list[TrialRecord]:
    first, started = unit[0], datetime.now(UTC)
    t0 = time.perf_counter()
    base = None
    try:
        base = load_base(first.model, first.dataset, first.base_seed, env)
        setup = make_setup(first, base)
        protocol = first.protocol
        results = protocol.run(setup, [parse(s.signal) for s in unit], draws=[s.draw for s in unit])
    except Exception as err:  # every trial of the unit failed the same way
        return [failed_record(spec, err, base, started_at=started, device=env.device) for spec in unit]
    extra = {
        "started_at": started,
        "device": env.device,
        "wall_s": time.perf_counter() - t0,
        "unit_size": len(unit),
        "eval_examples": json.dumps(setup.eval_examples),
        "units_per_step": protocol.units_per_step(setup.groups.n_units),
        "tie_seed": setup.tie_seed,
    }
    context = Context(setup.groups.coupled, protocol.aggregation)
    return [_record(spec, result, base, context, extra) for spec, result in zip(unit, results, strict=True)]


def _record(
    spec: TrialSpec, result: TrajectoryResult, base: Base, context: Context, extra: dict
) -> TrialRecord:
    steps = [{"run_key": spec.run_key, **row} for row in result.rows]
    first = steps[0] if steps else {}  # a trajectory that failed before its first row has none
    extra = {
        **extra,
        **result.trial,
        "stop_reason": result.stop_reason,
        "initial_weights": first.get("weights_remaining"),
        "initial_macs": first.get("macs_remaining"),
        "initial_units": first.get("units_remaining"),
        **{f"t_{k}": float(sum(r[f"t_{k}"] for r in result.rows)) for k in TIMINGS},
    }
    if result.error is not None:
        return TrialRecord(spec, trial_row(spec, base, "failed", context, error=result.error, **extra), steps)
    extra.update(headline(result.rows, base.reference_acc))
    return TrialRecord(spec, trial_row(spec, base, "ok", context, **extra), steps)


def pending(specs: Sequence[TrialSpec], store, skip: Collection[str] = ("ok", "failed")) -> list[TrialSpec]:  # noqa: ANN001
    """The specs whose newest stored trial row has no status in ``skip`` (never stored: pending)."""
    if not skip or not any(store.has("trials", s.run_key) for s in specs):
        return list(specs)
    done = store.done(tuple(skip))
    return [s for s in specs if s.run_key not in done]


def execute(
    specs: Sequence[TrialSpec],
    store,  # noqa: ANN001 - a study.store.Store
    env: Environment = LOCAL,
    *,
    skip: Collection[str] = ("ok", "failed"),
    on_record: OnRecord = None,
) -> list[TrialRecord]:
    """Skip what the store holds (statuses in ``skip``), run the rest, write each trial as it ends.

    ``on_record`` is called after each trial is stored (progress, printing).
    """

    def write(record: TrialRecord) -> None:
        store.write_trial(record.trial, record.steps)
        if on_record is not None:
            on_record(record)

    return run_trials(pending(specs, store, skip), env, write)
