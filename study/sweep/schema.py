"""The sweep spec's schema: one strict pydantic model per section, and errors that point at lines.

Types, ranges, enums, required and unknown keys, NaN and infinity are pydantic's job
(:data:`SECTION`: exact types, so ``"1"`` is not 1 and ``true`` is not a seed). Every key
carries its allowed values in words and its meaning: they word the errors and
docs/spec.md (:mod:`study.sweep.spec_doc`), so the two cannot disagree. :func:`explain`
turns pydantic's errors into one :class:`PrunetaxError` naming the table, key and line.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from study.environment import DEFAULT_CACHE
from study.params import check_device
from taxonomy.errors import PrunetaxError, close_matches

__all__ = ["SECTION", "SpecDocument", "SweepSection", "ResourcesSection", "RunSection", "RankSection"]
__all__ += ["Lines", "explain", "allowed", "label", "unknown"]

SECTION = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


def key(allowed_text: str, meaning: str, **kw: Any) -> Any:
    """A spec key: what it may be (in words) and what it means."""
    return Field(description=meaning, json_schema_extra={"allowed": allowed_text}, **kw)


def _one_or_list(value: object) -> object:
    """A single value stands for a list of one (``models = "tiny_cnn"``)."""
    return [value] if isinstance(value, str | int | dict) and not isinstance(value, bool) else value


def _nonblank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _distinct(values: list) -> list:
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise PrunetaxError(f"lists {', '.join(map(str, twice))} more than once; list each seed once.")
    return values


def _known_models(names: list[str]) -> list[str]:
    from study import models

    for name in names:
        models.entry(name)  # unknown: "did you mean", tv: and import-string forms
    return names


def _known_datasets(names: list[str]) -> list[str]:
    from study import data
    from study.data.sources import IMAGEFOLDER

    for name in names:
        if not name.startswith(IMAGEFOLDER):  # a folder is the environment's (preflight)
            data.entry(name)
    return names


def _selectors(items: list) -> list:
    from study.sweep.signals import select_signals

    select_signals(items)  # every selector is valid (checked once, without a network)
    return items


def _known_protocol(name: str) -> str:
    from study.protocols import PROTOCOLS

    PROTOCOLS.get(name)
    return name


Name = Annotated[str, AfterValidator(_nonblank)]
Names = Annotated[list[Name], BeforeValidator(_one_or_list), Field(min_length=1)]
Seeds = Annotated[
    list[Annotated[int, Field(ge=0)]],
    BeforeValidator(_one_or_list),
    Field(min_length=1),
    AfterValidator(_distinct),
]
Signals = Annotated[list[Any], BeforeValidator(_one_or_list), Field(min_length=1), AfterValidator(_selectors)]
Path_ = Annotated[str, AfterValidator(_nonblank)]

SIGNALS = (
    "a selector or a list of selectors: ids, aliases, random, oracle, groups (all, distinct, aliases, "
    "paper_best) or filter tables"
)
SIGNALS_MEANING = (
    "which signals run; `distinct` and the merging of equivalent signals are resolved per network "
    "(its coupling decides the classes)"
)


class SweepSection(BaseModel):
    """``[sweep]``: what runs (models x datasets x seeds x signals) and where things are."""

    model_config = SECTION

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")] = key(
        "a string of letters, digits, _ . - (not starting with _ . -)",
        "the sweep's name (progress lines, Ray's folder)",
        default="sweep",
    )
    store: Path_ = key(
        "a path", "the results store folder (relative to the spec file)", default="results/store"
    )
    models: Annotated[Names, AfterValidator(_known_models)] = key(
        "a model name or a list of them (registry name, tv:NAME, module.path:builder)", "the networks"
    )
    datasets: Annotated[Names, AfterValidator(_known_datasets)] = key(
        "a dataset name or a list of them (registry name, imagefolder:PATH, module.path:loader)",
        "the datasets every model is trained and pruned on",
        default=["digits"],
    )
    base_seeds: Seeds = key(
        "a whole number >= 0 or a list of distinct ones",
        "one base model per seed (its own split, weights and eval batches; trained once, cached)",
        default=[0],
    )
    seeds: Literal["base"] | Seeds = key(
        '"base" or a list of distinct whole numbers >= 0',
        'trial seeds: "base" = each trial uses its base seed; a list = every base seed x every seed',
        default="base",
    )
    signals: Signals | None = key(SIGNALS, SIGNALS_MEANING + " (default of every [[runs]])", default=None)
    signals_per_unit: Annotated[int, Field(ge=1)] = key(
        "an integer >= 1", "trials batched into one work unit (one Ray trial; run in lockstep)", default=64
    )
    random_draws: Annotated[int, Field(ge=1)] = key(
        "an integer >= 1",
        "independent draws of `random` per repeat (its distribution is the baseline)",
        default=5,
    )
    cache_dir: Path_ = key(
        "a path", "the base-model cache (relative to the spec file)", default=DEFAULT_CACHE.as_posix()
    )
    data_root: Path_ | None = key(
        "a path",
        "dataset files (relative to the spec file; default $PRUNETAX_DATA or ~/.cache/prunetax/data)",
        default=None,
    )
    device: Annotated[str, AfterValidator(check_device)] = key(
        "one of cpu, cuda, cuda:N, mps", "where trials and base-model training run", default="cpu"
    )
    download: bool = key("true or false", "download missing datasets (online machines only)", default=False)


class ResourcesSection(BaseModel):
    """``[resources]``: what Ray reserves for one work unit."""

    model_config = SECTION

    cpus_per_trial: Annotated[float, Field(gt=0)] = key(
        "a number > 0", "CPUs per work unit (also torch's thread count in the worker)", default=1
    )
    gpus_per_trial: Annotated[float, Field(ge=0)] = key(
        "a number >= 0",
        "GPUs per work unit; fractions share a GPU (e.g. 0.25); needs device = cuda",
        default=0,
    )
    max_concurrent: Annotated[int, Field(ge=1)] | None = key(
        "an integer >= 1", "at most this many work units at once (default: as many as fit)", default=None
    )


class RunSection(BaseModel):
    """One ``[[runs]]`` table: a protocol with its parameters (the other keys), and what it runs on."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)

    protocol: Annotated[str, AfterValidator(_known_protocol)] = key(
        "a registered protocol name",
        "the pruning protocol (its parameters are the run's other keys)",
        default="sensitivity",
    )
    signals: Signals | None = key(SIGNALS, SIGNALS_MEANING + " (default: [sweep].signals)", default=None)
    models: Names | None = key(
        "a model name or a list of them", "narrows [sweep].models for this run", default=None
    )
    datasets: Names | None = key(
        "a dataset name or a list of them", "narrows [sweep].datasets for this run", default=None
    )


class RankSection(BaseModel):
    """``[rank_quality]``: every signal's unit ranking vs the oracle's (the saliency keys are its
    other keys)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)

    signals: Signals | None = key(
        SIGNALS, "signals whose rankings are compared with the oracle's", default=None
    )
    every: Annotated[int, Field(ge=0)] = key(
        "an integer >= 0",
        "0: rank on the unpruned network only; k: also every k steps along the oracle's own greedy "
        "trajectory (one unit per step), to see whether agreement decays as pruning proceeds",
        default=0,
    )
    stop_drop: Annotated[float, Field(gt=0)] = key(
        "a number > 0",
        "with every > 0: follow the oracle's trajectory until test accuracy is this many points below "
        "the reference",
        default=10.0,
    )


class SpecDocument(BaseModel):
    """The whole file: ``[sweep]``, ``[resources]``, one or more ``[[runs]]``, ``[rank_quality]``."""

    model_config = SECTION

    sweep: SweepSection = key("a table", "what runs and where things are; `models` at least", default=...)
    resources: ResourcesSection = key("a table", "Ray resources", default=ResourcesSection())
    runs: Annotated[list[RunSection], Field(min_length=1)] = key(
        "one or more [[runs]] tables",
        'protocol configurations, e.g. [[runs]] with protocol = "sensitivity"',
        default=...,
    )
    rank_quality: RankSection | None = key("a table", "oracle rank-quality jobs", default=None)


MODELS: dict[str, type[BaseModel]] = {
    "sweep": SweepSection,
    "resources": ResourcesSection,
    "runs": RunSection,
    "rank_quality": RankSection,
}


def allowed(section: str, name: str) -> str:
    """The allowed values of key ``name`` of ``section``, in words ("" if not a schema key)."""
    model = MODELS.get(section, SpecDocument) if name else SpecDocument
    info = model.model_fields.get(name or section)
    extra = info.json_schema_extra if info is not None else None
    return str(extra.get("allowed", "")) if isinstance(extra, dict) else ""


def label(section: str, name: str | None = None, item: int | None = None) -> str:
    """``[sweep].models``, ``[[runs]] #2.retrain_steps``, ``[resources]``."""
    table = f"[[runs]] #{item + 1}" if section == "runs" and item is not None else f"[{section}]"
    if section == "runs" and item is None:
        table = "[[runs]]"
    return f"{table}.{name}" if name else table


class Lines:
    """The line of each table header and key in the TOML text (for messages)."""

    _HEADER = re.compile(r"^\s*\[(\[)?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]?\]\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")

    def __init__(self, text: str) -> None:
        self.keys: dict[tuple[str, int, str], int] = {}
        self.headers: dict[tuple[str, int], int] = {}
        table, count = "", {"": 0}
        for n, line in enumerate(text.splitlines(), start=1):
            if m := self._HEADER.match(line):
                table = m.group(2).strip("\"'")
                count[table] = count.get(table, -1) + 1
                self.headers.setdefault((table, count[table]), n)
            elif m := self._KEY.match(line):
                self.keys.setdefault((table, count.get(table, 0), m.group(1).strip("\"'")), n)

    def line(self, section: str, name: str | None = None, item: int | None = None) -> int | None:
        """The key's line, else its table's header, else the root key naming the table."""
        at = item or 0
        found = self.keys.get((section, at, name)) if name else None
        return found or self.headers.get((section, at)) or self.keys.get(("", 0, section))

    def where(self, section: str, name: str | None = None, item: int | None = None) -> str:
        n = self.line(section, name, item)
        return label(section, name, item) + (f" (line {n})" if n else "")


def _site(loc: tuple) -> tuple[str, int | None, str | None]:
    """(section, item, key) of an error location."""
    section = str(loc[0]) if loc else ""
    if section == "runs":
        item = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        name = loc[2] if item is not None and len(loc) > 2 else None
        return section, item, str(name) if name is not None else None
    return section, None, str(loc[1]) if len(loc) > 1 else None


def _raw(doc: dict, section: str, item: int | None, name: str | None) -> object:
    value: object = doc.get(section)
    if item is not None:
        value = value[item] if isinstance(value, list) and item < len(value) else None
    if name is not None:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _shown(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def unknown(name: str, valid: list[str], what: str = "key") -> str:
    """The message for an unknown key (or section), with close matches and the valid ones."""
    close = close_matches(name, valid)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    return f"unknown {what}.{hint} Valid {what}s: {', '.join(sorted(valid))}."


def _message(errors: list[dict], doc: dict, site: tuple[str, int | None, str | None]) -> str:
    section, item, name = site
    kinds = {e["type"] for e in errors}
    if "extra_forbidden" in kinds:
        if name:
            return unknown(name, list(MODELS[section].model_fields))
        return unknown(section, list(MODELS), "section")
    custom = [e for e in errors if e["type"] == "value_error"]
    if custom:
        return str(custom[0]["ctx"]["error"])
    words = "a table" if item is not None and not name else allowed(section, name or "")
    culprit = f"`{name}`" if name else f"`{label(section, None, item)}`"
    if "missing" in kinds:
        meaning = (MODELS[section] if name else SpecDocument).model_fields[name or section].description
        return f"{culprit} is required ({meaning}): {words}."
    return f"{culprit} must be {words}; got {_shown(_raw(doc, section, item, name))}."


def explain(err: ValidationError, doc: dict, lines: Lines, source: str) -> PrunetaxError:
    """One error for a failed validation: the first problem by line, and where the others are."""
    sites: dict[tuple, list[dict]] = {}
    for e in err.errors():
        sites.setdefault(_site(e["loc"]), []).append(e)
    order = sorted(sites, key=lambda s: (lines.line(*_pos(s)) or 10**9, str(s)))
    first = order[0]
    section, item, name = first
    text = f"{source}: {lines.where(section, name, item)}: {_message(sites[first], doc, first)}"
    if len(order) > 1:
        text += f" (also: {', '.join(lines.where(s[0], s[2], s[1]) for s in order[1:4])}"
        text += f" and {len(order) - 4} more)" if len(order) > 4 else ")"
    return PrunetaxError(text, key=name or section)


def _pos(site: tuple[str, int | None, str | None]) -> tuple[str, str | None, int | None]:
    return site[0], site[2], site[1]
