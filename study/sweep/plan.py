"""From a sweep spec to the work still to do: trials, rank-quality jobs, base models.

The store is the source of truth: a trial whose ``trials`` row exists is not run again
(``retry_failed`` reruns exactly the stored failures); a rank-quality job is done when
its ``oracle`` file exists. Trials are grouped into work units (same model, dataset,
seeds and protocol; up to ``signals_per_unit`` signals) that run in lockstep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from study.groups import network_context
from study.rankings import RankJob
from study.store import Store
from study.sweep.spec import Selection, SweepSpec
from study.trial import TrialSpec
from taxonomy.spec import parse

__all__ = ["Plan", "expand", "rank_jobs", "make_plan", "check_environment", "signal_listing"]


def _seed_pairs(spec: SweepSpec) -> list[tuple[int, int]]:
    if spec.seeds is None:
        return [(b, b) for b in spec.base_seeds]
    return [(b, s) for b in spec.base_seeds for s in spec.seeds]


def expand(spec: SweepSpec) -> list[TrialSpec]:
    """Every trial of the sweep, in a stable order (duplicates removed).

    Signal selectors resolve per network (``distinct`` is the network's classes), and a
    randomised signal (``random``) runs ``random_draws`` independent draws per repeat.
    """
    out: dict[str, TrialSpec] = {}
    for run in spec.runs:
        for model in run.models:
            signals = run.signals.resolve(network_context(model, run.protocol.aggregation))
            for dataset in run.datasets:
                for base_seed, seed in _seed_pairs(spec):
                    for signal in signals:
                        for draw in range(spec.random_draws if signal.randomised else 1):
                            t = TrialSpec(model, dataset, signal.id, run.protocol, seed, base_seed, draw)
                            out.setdefault(t.run_key, t)
    return list(out.values())


def rank_jobs(spec: SweepSpec) -> list[RankJob]:
    rq = spec.rank_quality
    if rq is None:
        return []
    out = []
    for m in spec.models:
        ids = tuple(s.id for s in rq.signals.resolve(network_context(m)))
        out += [
            RankJob(m, d, b, s, ids, rq.saliency, every=rq.every, stop_drop=rq.stop_drop)
            for d in spec.datasets
            for b, s in _seed_pairs(spec)
        ]
    return out


@dataclass
class Plan:
    spec: SweepSpec
    trials: list[TrialSpec]
    jobs: list[RankJob]
    stored_ok: int
    stored_failed: int
    todo: list[TrialSpec]
    jobs_todo: list[RankJob]
    units: list[list[TrialSpec]]
    base_models: list[tuple[str, str, int]]

    @property
    def nothing_to_do(self) -> bool:
        return not self.todo and not self.jobs_todo

    def describe(self) -> str:
        """The dry-run text; one line when everything is stored (an idle rerun stays quiet)."""
        head = f"sweep {self.spec.name!r} -> store {self.spec.store}"
        if self.nothing_to_do:
            jobs = f" and {len(self.jobs)} rank-quality jobs" if self.jobs else ""
            failed = (
                f" ({self.stored_failed} stored as failed: --retry-failed reruns them)"
                if self.stored_failed
                else ""
            )
            return f"{head}: all {len(self.trials)} trials{jobs} are stored{failed}"
        lines = [
            head,
            f"  trials: {len(self.trials)} expanded, {self.stored_ok} stored ok, "
            f"{self.stored_failed} stored failed, {len(self.todo)} to run in {len(self.units)} work units",
        ]
        by = Counter((t.model, t.dataset, t.protocol.name) for t in self.todo)
        for (m, d, p), n in sorted(by.items()):
            lines.append(f"    {m} / {d} / {p}: {n} trials")
        if self.jobs:
            lines.append(
                f"  rank-quality jobs: {len(self.jobs)} expanded, {len(self.jobs_todo)} to run "
                f"({len(self.jobs[0].signals)} signals + oracle each)"
            )
        if self.base_models:
            lines.append(
                f"  base models needed: {len(self.base_models)} "
                f"({', '.join(f'{m}/{d}/s{s}' for m, d, s in self.base_models)})"
            )
        r = self.spec.resources
        lines.append(
            f"  resources per work unit: {r.cpus_per_trial:g} CPU, {r.gpus_per_trial:g} GPU; "
            f"device {self.spec.device}"
        )
        if self.stored_failed and not self.todo:
            lines.append("  stored failures are not rerun; pass --retry-failed to rerun them")
        return "\n".join(lines)


def _units(todo: list[TrialSpec], size: int) -> list[list[TrialSpec]]:
    groups: dict[str, list[TrialSpec]] = {}
    for t in todo:
        groups.setdefault(t.unit_key, []).append(t)
    units = []
    for members in groups.values():
        n = -(-len(members) // size)  # balanced chunks of at most `size`
        units.extend(members[k::n] for k in range(n))
    return units


def make_plan(spec: SweepSpec, retry_failed: bool = False) -> Plan:
    trials, jobs = expand(spec), rank_jobs(spec)
    store = Store(spec.store)
    ok, failed = store.done(("ok",)), store.done(("failed",))
    keys = {t.run_key for t in trials}
    if retry_failed:
        todo = [t for t in trials if t.run_key in failed]
    else:
        todo = [t for t in trials if t.run_key not in ok and t.run_key not in failed]
    jobs_done = store.keys("oracle")
    jobs_todo = [] if retry_failed else [j for j in jobs if j.run_key not in jobs_done]
    needed = sorted(
        {(t.model, t.dataset, t.base_seed) for t in todo}
        | {(j.model, j.dataset, j.base_seed) for j in jobs_todo}
    )
    return Plan(
        spec,
        trials,
        jobs,
        len(keys & ok),
        len(keys & failed),
        todo,
        jobs_todo,
        _units(todo, spec.signals_per_unit),
        needed,
    )


def check_environment(spec: SweepSpec, local: bool = True) -> None:
    """Everything the sweep needs, checked before anything runs (:func:`study.preflight.preflight`):
    errors name the spec key at fault and its line. ``local``: the work runs on this machine
    (not on a cluster whose devices it cannot see)."""
    from study.preflight import Work, preflight

    def at(run: int) -> Callable[[str], str]:
        return lambda key: spec.locate(key, run)

    work = [
        Work(m, d, spec.base_seeds, run.protocol.saliency, run.protocol, at(k))
        for k, run in enumerate(spec.runs)
        for m in run.models
        for d in run.datasets
    ]
    rq = spec.rank_quality
    if rq is not None:
        where = lambda key: spec.locate(key, section="rank_quality")  # noqa: E731
        work += [
            Work(m, d, spec.base_seeds, rq.saliency, None, where) for m in spec.models for d in spec.datasets
        ]
    preflight(spec.env, work, where=spec.locate, folders={"store": spec.store}, local=local)


def signal_listing(spec: SweepSpec) -> str:
    """The signals each run (and the rank-quality job) expands to, per network: ``distinct`` and
    the merging of equivalent signals depend on the network's coupling and the run's
    aggregation (``--dry-run --list``)."""
    lines = []
    for k, run in enumerate(spec.runs, start=1):
        lines.append(f"[[runs]] #{k}: {run.protocol.name} on {', '.join(run.datasets)}")
        lines += _per_network(run.models, run.signals, run.protocol.aggregation)
    if spec.rank_quality is not None:
        lines.append(f"[rank_quality]: unit rankings vs the oracle on {', '.join(spec.datasets)}")
        lines += _per_network(spec.models, spec.rank_quality.signals, "pooled")
    return "\n".join(lines)


def _per_network(models: tuple[str, ...], selection: Selection, aggregation: str) -> list[str]:
    from taxonomy.aliases import aliases_of

    lines, seen = [], {}
    for model in models:
        context = network_context(model, aggregation)
        ids = tuple(s.id for s in selection.resolve(context))
        if ids in seen:
            lines.append(f"  {model}: the same {len(ids)} signals as {seen[ids]}")
            continue
        seen[ids] = model
        lines.append(f"  {model} ({context.describe()}): {len(ids)} signals")
        for i in ids:
            names = aliases_of(parse(i))
            lines.append(f"    {i}" + (f"  ({', '.join(names)})" if names else ""))
    return lines
