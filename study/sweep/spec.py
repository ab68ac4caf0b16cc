"""Sweep specs: a TOML file naming models, datasets, seeds, signals, protocols, resources
and the store, validated completely before anything runs.

Example (every key but ``models`` and ``runs`` is optional)::

    [sweep]
    name = "demo"
    store = "results/demo/store"          # paths are relative to the current folder
    models = ["tiny_cnn", "tiny_resnet"]
    datasets = ["digits"]
    base_seeds = [0, 1, 2]                # one base model per seed (trained once, cached)
    seeds = "base"                        # trial seed = base seed; or a list (cartesian)
    signals = ["distinct", "random", "oracle"]   # distinct: per network (its coupling decides)
    signals_per_unit = 64                 # trials batched (in lockstep) per Ray trial
    random_draws = 5                      # independent draws of `random` per repeat

    [resources]
    cpus_per_trial = 1
    gpus_per_trial = 0

    [[runs]]                              # one table per protocol configuration
    protocol = "sensitivity"
    channels_per_step = 0.05

    [[runs]]
    protocol = "retrain"
    signals = ["aliases", "paper_best", "random"]   # overrides [sweep].signals
    retrain_steps = 20

    [rank_quality]                        # optional: every signal's ranking vs the oracle
    signals = ["distinct", "random"]

Errors name the offending key and its line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from study.environment import DEFAULT_CACHE, Environment
from study.protocols import PROTOCOLS, Protocol, make_protocol, parameters
from study.saliency import PAPER_SALIENCY, SaliencyData
from study.sweep.signals import select_signals
from taxonomy.equivalence import UNCOUPLED, Context
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec

__all__ = ["Resources", "Run", "RankQuality", "SweepSpec", "load_spec", "parse_spec"]

_SECTIONS = {"sweep", "resources", "runs", "rank_quality"}
_SWEEP_KEYS = {
    "name",
    "store",
    "models",
    "datasets",
    "base_seeds",
    "seeds",
    "signals",
    "signals_per_unit",
    "random_draws",
    "cache_dir",
    "data_root",
    "device",
    "download",
}
_PROTOCOL_KEYS = {p.name for cls in PROTOCOLS.values() for p in parameters(cls)}
_RUN_KEYS = _PROTOCOL_KEYS | {"protocol", "signals", "models", "datasets"}
_RANK_KEYS = {"signals"} | {p.name for p in parameters(SaliencyData)}


@dataclass(frozen=True)
class Resources:
    """Ray resources of one work unit; ``cpus_per_trial`` also sets torch's thread count."""

    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_concurrent: int | None = None


@dataclass(frozen=True)
class Selection:
    """Signal selectors as written (ids, aliases, groups, filter tables), resolved per network:
    ``distinct`` and the de-duplication depend on the network's equivalence context."""

    items: tuple

    def resolve(self, context: Context = UNCOUPLED) -> tuple[SignalSpec, ...]:
        return tuple(select_signals(self.items, context))


@dataclass(frozen=True)
class Run:
    """One protocol configuration and the signals/models/datasets it applies to."""

    protocol: Protocol
    signals: Selection
    models: tuple[str, ...]
    datasets: tuple[str, ...]


@dataclass(frozen=True)
class RankQuality:
    """Oracle rank-quality job: unit scores of every signal and the oracle, unpruned network."""

    signals: Selection
    saliency: SaliencyData = field(default=PAPER_SALIENCY)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    store: Path
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    base_seeds: tuple[int, ...]
    seeds: tuple[int, ...] | None  # None: trial seed = base seed
    runs: tuple[Run, ...]
    rank_quality: RankQuality | None = None
    resources: Resources = field(default_factory=Resources)
    signals_per_unit: int = 64
    random_draws: int = 5
    cache_dir: Path = DEFAULT_CACHE
    data_root: str | None = None
    device: str = "cpu"
    download: bool = False
    source: str = ""

    @property
    def env(self) -> Environment:
        """Where the sweep's work runs (absolute paths: workers may run elsewhere)."""
        return Environment(self.cache_dir, self.data_root, self.device, self.download).absolute()


class _Lines:
    """Finds the line of a key in the TOML text, for error messages."""

    _HEADER = re.compile(r"^\s*\[(\[)?\s*([A-Za-z0-9_.\-\"]+)\s*\]?\]\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")

    def __init__(self, text: str) -> None:
        self.index: dict[tuple[str, int, str], int] = {}
        self.headers: dict[tuple[str, int], int] = {}
        table, count = "", {}
        for n, line in enumerate(text.splitlines(), start=1):
            if m := self._HEADER.match(line):
                table = m.group(2).strip('"')
                count[table] = count.get(table, -1) + 1
                self.headers[(table, count[table])] = n
            elif m := self._KEY.match(line):
                self.index.setdefault((table, count.get(table, 0), m.group(1).strip('"')), n)

    def where(self, table: str, key: str | None = None, item: int = 0) -> str:
        n = self.index.get((table, item, key)) if key else None
        n = n or self.headers.get((table, item))
        return f" (line {n})" if n else ""


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.lines = _Lines(text)
        self.source = source

    def error(self, msg: str, table: str, key: str | None = None, item: int = 0) -> PrunetaxError:
        label = f"[{table}]" if table != "runs" else f"[[runs]] #{item + 1}"
        where = f"{label}.{key}" if key else label
        return PrunetaxError(f"{self.source}: {where}{self.lines.where(table, key, item)}: {msg}")

    def check_keys(self, data: dict, allowed: set[str], table: str, item: int = 0) -> None:
        for key in data:
            if key not in allowed:
                from taxonomy.errors import close_matches

                close = close_matches(key, allowed)
                hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise self.error(
                    f"unknown key.{hint} Valid keys: {', '.join(sorted(allowed))}.", table, key, item
                )

    def strings(
        self, data: dict, key: str, table: str, default: tuple[str, ...] | None = None, item: int = 0
    ) -> tuple[str, ...]:
        value = data.get(key, default)
        if value is None:
            raise self.error("is required.", table, key, item)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
            raise self.error(f"must be a non-empty list of strings; got {value!r}.", table, key, item)
        return tuple(value)

    def ints(self, data: dict, key: str, table: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = data.get(key, list(default))
        if isinstance(value, int):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, int) and v >= 0 for v in value):
            raise self.error(f"must be a non-empty list of whole numbers >= 0; got {value!r}.", table, key)
        if len(set(value)) != len(value):
            raise self.error(f"lists a seed twice: {value!r}.", table, key)
        return tuple(value)

    def signals(self, data: dict, table: str, default: list | None, item: int = 0) -> Selection:
        value = data.get("signals", default)
        if value is None:
            raise self.error('is required (e.g. signals = ["distinct", "random"]).', table, "signals", item)
        if isinstance(value, str | dict):
            value = [value]
        try:
            select_signals(value)  # every selector is valid (checked once, without a network)
        except PrunetaxError as err:
            raise self.error(str(err), table, "signals", item) from None
        return Selection(tuple(value))


def _run(
    reader: _Reader, data: dict, item: int, sweep: dict, models: tuple[str, ...], datasets: tuple[str, ...]
) -> Run:
    reader.check_keys(data, _RUN_KEYS, "runs", item)
    params = {k: v for k, v in data.items() if k in _PROTOCOL_KEYS}
    try:
        protocol = make_protocol(data.get("protocol", "sensitivity"), **params)
    except PrunetaxError as err:
        raise reader.error(str(err), "runs", err.key or "protocol", item) from None
    run_models = reader.strings(data, "models", "runs", models, item)
    run_datasets = reader.strings(data, "datasets", "runs", datasets, item)
    for key, chosen, allowed in (("models", run_models, models), ("datasets", run_datasets, datasets)):
        extra = set(chosen) - set(allowed)
        if extra:
            raise reader.error(
                f"names {sorted(extra)} not in [sweep].{key}; a run can only narrow the sweep.",
                "runs",
                key,
                item,
            )
    signals = reader.signals(data, "runs", sweep.get("signals"), item)
    return Run(protocol, signals, run_models, run_datasets)


def _validate_names(reader: _Reader, models: tuple[str, ...], datasets: tuple[str, ...]) -> None:
    from study import data
    from study import models as registry

    for key, names, check in (("models", models, registry.entry), ("datasets", datasets, data.entry)):
        for name in names:
            try:
                check(name)
            except PrunetaxError as err:
                raise reader.error(str(err), "sweep", key) from None


def parse_spec(text: str, source: str = "<spec>") -> SweepSpec:
    """Parse and validate a sweep spec from TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PrunetaxError(f"{source}: not valid TOML: {err}.") from None
    reader = _Reader(text, source)
    for key in doc:
        if key not in _SECTIONS:
            raise reader.error(f"unknown section; valid: {', '.join(sorted(_SECTIONS))}.", key)
    sweep = doc.get("sweep", {})
    reader.check_keys(sweep, _SWEEP_KEYS, "sweep")
    models = reader.strings(sweep, "models", "sweep")
    datasets = reader.strings(sweep, "datasets", "sweep", ("digits",))
    _validate_names(reader, models, datasets)
    base_seeds = reader.ints(sweep, "base_seeds", "sweep", (0,))
    seeds_value = sweep.get("seeds", "base")
    seeds = None if seeds_value == "base" else reader.ints(sweep, "seeds", "sweep", (0,))
    runs_data = doc.get("runs")
    if not isinstance(runs_data, list) or not runs_data:
        raise reader.error('at least one [[runs]] table is required (e.g. protocol = "sensitivity").', "runs")
    runs = tuple(_run(reader, r, k, sweep, models, datasets) for k, r in enumerate(runs_data))
    rank = None
    if "rank_quality" in doc:
        rq = doc["rank_quality"]
        reader.check_keys(rq, _RANK_KEYS, "rank_quality")
        try:
            saliency = SaliencyData.make(**{k: v for k, v in rq.items() if k != "signals"})
        except PrunetaxError as err:
            raise reader.error(str(err), "rank_quality", err.key) from None
        rank = RankQuality(reader.signals(rq, "rank_quality", sweep.get("signals")), saliency)
    res = doc.get("resources", {})
    reader.check_keys(res, {f.name for f in fields(Resources)}, "resources")
    resources = Resources(**res)
    if resources.cpus_per_trial <= 0 or resources.gpus_per_trial < 0:
        raise reader.error("cpus_per_trial must be > 0 and gpus_per_trial >= 0.", "resources")
    per_unit = sweep.get("signals_per_unit", 64)
    if not isinstance(per_unit, int) or isinstance(per_unit, bool) or per_unit < 1:
        raise reader.error(f"must be a whole number >= 1; got {per_unit!r}.", "sweep", "signals_per_unit")
    draws = sweep.get("random_draws", 5)
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise reader.error(f"must be a whole number >= 1; got {draws!r}.", "sweep", "random_draws")
    return SweepSpec(
        name=str(sweep.get("name", "sweep")),
        store=Path(sweep.get("store", "results/store")),
        models=models,
        datasets=datasets,
        base_seeds=base_seeds,
        seeds=seeds,
        runs=runs,
        rank_quality=rank,
        resources=resources,
        signals_per_unit=per_unit,
        random_draws=draws,
        cache_dir=Path(sweep.get("cache_dir", DEFAULT_CACHE)),
        data_root=sweep.get("data_root"),
        device=str(sweep.get("device", "cpu")),
        download=bool(sweep.get("download", False)),
        source=source,
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate the sweep spec at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise PrunetaxError(f"no sweep spec at {path}; write one (see `prunetax sweep --help`).")
    return parse_spec(path.read_text(), str(path))
