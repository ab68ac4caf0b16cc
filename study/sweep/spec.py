"""Sweep specs: a TOML file naming models, datasets, seeds, signals, protocols, resources
and the store, validated completely before anything runs. docs/spec.md documents every key;
examples/*.toml are complete specs.

Validation has two stages. The schema (:mod:`study.sweep.schema`, strict pydantic models
of the four sections) checks types, ranges, enums, unknown and required keys; then each
``[[runs]]`` table's protocol validates its own parameters (a parameter of another
protocol is named as such), a run may only narrow the sweep's models and datasets, and a
GPU device needs GPUs. Every error names the table, the key and its line. Paths (``store``,
``cache_dir``, ``data_root``) are relative to the spec file's folder, so a sweep means the
same thing from wherever it is started.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from study.environment import DEFAULT_CACHE, Environment
from study.protocols import Protocol, all_parameters, make_protocol, owners
from study.saliency import PAPER_SALIENCY, SaliencyData
from study.sweep.schema import Lines, RankSection, RunSection, SpecDocument, explain, unknown
from study.sweep.signals import select_signals
from taxonomy.equivalence import UNCOUPLED, Context
from taxonomy.errors import PrunetaxError
from taxonomy.spec import SignalSpec

__all__ = ["Resources", "Run", "RankQuality", "Selection", "SweepSpec", "Locator", "load_spec", "parse_spec"]


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
    every: int = 0
    stop_drop: float = 10.0


@dataclass(frozen=True)
class Locator:
    """Where a key of a parsed spec was written: ``spec.toml: [[runs]] #2.eval_batch_size (line 19)``.

    A run's key that the run does not set is located where it is inherited from (``[sweep]``)."""

    source: str = "<spec>"
    lines: Lines = field(default_factory=lambda: Lines(""))
    run_keys: tuple[frozenset, ...] = ()

    def __call__(self, name: str, run: int | None = None, section: str = "sweep") -> str:
        if run is not None:
            if run < len(self.run_keys) and name in self.run_keys[run]:
                return f"{self.source}: {self.lines.where('runs', name, run)}"
            if name not in _INHERITED:  # a protocol parameter left at its default
                return f"{self.source}: {self.lines.where('runs', None, run)}"
        if name in _INHERITED:
            section = "sweep"
        return f"{self.source}: {self.lines.where(section, name)}"


_INHERITED = {"models", "datasets", "signals", "device", "store", "cache_dir", "data_root"}


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
    locate: Locator = field(default_factory=Locator, compare=False, repr=False)

    @property
    def env(self) -> Environment:
        """Where the sweep's work runs (absolute paths: workers may run elsewhere)."""
        return Environment(self.cache_dir, self.data_root, self.device, self.download).absolute()


def _fail(where: str, err: PrunetaxError) -> PrunetaxError:
    return PrunetaxError(f"{where}: {err}", key=err.key)


def _run(doc: SpecDocument, item: int, locate: Locator) -> Run:
    data: RunSection = doc.runs[item]
    params = dict(data.model_extra or {})
    valid = [*RunSection.model_fields, *all_parameters()]
    for name in params:
        if name not in valid:
            raise _fail(locate(name, item), PrunetaxError(unknown(name, valid)))
    try:
        protocol = make_protocol(data.protocol, **params)
    except PrunetaxError as err:
        culprit = err.key if err.key in params else "protocol"
        implicit = "protocol" not in data.model_fields_set and data.protocol not in owners(culprit)
        note = (
            PrunetaxError(f"{err} This run has no `protocol` key, so it is sensitivity.") if implicit else err
        )
        raise _fail(locate(culprit, item), note) from None
    sweep = doc.sweep
    chosen = {"models": data.models or sweep.models, "datasets": data.datasets or sweep.datasets}
    for name, names in chosen.items():
        extra = sorted(set(names) - set(getattr(sweep, name)))
        if extra:
            message = f"`{name}` names {extra}, which [sweep].{name} lacks; a run can only narrow the sweep."
            raise _fail(locate(name, item), PrunetaxError(message))
    signals = data.signals or sweep.signals
    if signals is None:
        message = '`signals` is required here or in [sweep] (e.g. signals = ["distinct", "random"]).'
        raise _fail(f"{locate.source}: {locate.lines.where('runs', None, item)}", PrunetaxError(message))
    selection = Selection(tuple(signals))
    try:
        for signal in selection.resolve():  # e.g. a protocol that runs only `random`
            protocol.check_signal(signal)
    except PrunetaxError as err:
        raise _fail(locate("signals", item), err) from None
    return Run(protocol, selection, tuple(chosen["models"]), tuple(chosen["datasets"]))


def _rank(doc: SpecDocument, locate: Locator) -> RankQuality | None:
    rq: RankSection | None = doc.rank_quality
    if rq is None:
        return None
    params = dict(rq.model_extra or {})
    valid = [*RankSection.model_fields, *SaliencyData.__dataclass_fields__]
    for name in params:
        if name not in valid:
            raise _fail(locate(name, section="rank_quality"), PrunetaxError(unknown(name, valid)))
    try:
        saliency = SaliencyData.make(**params)
    except PrunetaxError as err:
        raise _fail(locate(err.key or "signals", section="rank_quality"), err) from None
    signals = rq.signals or doc.sweep.signals
    if signals is None:
        message = '`signals` is required here or in [sweep] (e.g. signals = ["distinct", "random"]).'
        raise _fail(f"{locate.source}: {locate.lines.where('rank_quality')}", PrunetaxError(message))
    return RankQuality(Selection(tuple(signals)), saliency, rq.every, rq.stop_drop)


def _path(text: str, base: Path | None) -> Path:
    path = Path(text).expanduser()
    return path if base is None or path.is_absolute() else Path(os.path.normpath(base.absolute() / path))


def _document(text: str, source: str) -> tuple[SpecDocument, Lines]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PrunetaxError(f"{source}: not valid TOML: {err}; fix the line it names.") from None
    lines = Lines(text)
    try:
        return SpecDocument.model_validate(raw), lines
    except ValidationError as err:
        raise explain(err, raw, lines, source) from None


def parse_spec(text: str, source: str = "<spec>", base: str | Path | None = None) -> SweepSpec:
    """Parse and validate a sweep spec from TOML text; relative paths are taken from ``base``
    (the spec file's folder; None: the current folder)."""
    doc, lines = _document(text, source)
    keys = tuple(frozenset(r.model_fields_set | set(r.model_extra or {})) for r in doc.runs)
    locate = Locator(source, lines, keys)
    runs = tuple(_run(doc, k, locate) for k in range(len(doc.runs)))
    rank = _rank(doc, locate)
    s, res = doc.sweep, doc.resources
    if s.device.startswith("cuda") != (res.gpus_per_trial > 0):
        message = (
            f"`device` is {s.device!r} but [resources].gpus_per_trial is {res.gpus_per_trial}; a CUDA device "
            'needs gpus_per_trial > 0 (e.g. 0.5), and GPUs are only used with device = "cuda".'
        )
        raise PrunetaxError(f"{locate('device')}: {message}", key="device")
    root = None if base is None else Path(base)
    return SweepSpec(
        name=s.name,
        store=_path(s.store, root),
        models=tuple(s.models),
        datasets=tuple(s.datasets),
        base_seeds=tuple(s.base_seeds),
        seeds=None if s.seeds == "base" else tuple(s.seeds),
        runs=runs,
        rank_quality=rank,
        resources=Resources(res.cpus_per_trial, res.gpus_per_trial, res.max_concurrent),
        signals_per_unit=s.signals_per_unit,
        random_draws=s.random_draws,
        cache_dir=_path(s.cache_dir, root),
        data_root=None if s.data_root is None else str(_path(s.data_root, root)),
        device=s.device,
        download=s.download,
        source=source,
        locate=locate,
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate the sweep spec at ``path`` (UTF-8 TOML; paths relative to its folder)."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "nothing"
        raise PrunetaxError(f"no sweep spec at {path} ({what} there); pass a .toml file (see docs/spec.md).")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PrunetaxError(f"cannot read the sweep spec {path}: {err.strerror or err}.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PrunetaxError(
            f"{path}: the spec must be UTF-8 text; byte {data[err.start]:#04x} at offset {err.start} is not. "
            "Save it as UTF-8."
        ) from None
    return parse_spec(text, str(path), base=path.parent)
