"""The key reference of docs/spec.md, generated from the schema and the registries.

The section keys come from :mod:`study.sweep.schema`, the protocols and their parameters
from the protocol registry, the rank-quality keys from :class:`study.saliency.SaliencyData`,
the filter keys and their ids from the taxonomy: nothing is written twice, so the document
cannot drift (tests/test_examples.py compares it). Regenerate the block in place with
``python -m study.sweep.spec_doc docs/spec.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from study.params import Param, parameters
from study.sweep.schema import MODELS

__all__ = ["BEGIN", "END", "reference", "documented_keys", "rewrite"]

BEGIN = "<!-- BEGIN GENERATED KEYS: python -m study.sweep.spec_doc docs/spec.md -->"
END = "<!-- END GENERATED KEYS -->"


def _toml(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(model: type[BaseModel]) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        default = "required" if info.is_required() else f"`{_toml(info.default)}`"
        allowed, meaning = _cell(str(extra.get("allowed", ""))), _cell(info.description or "")
        rows.append(f"| `{name}` | {allowed} | {default} | {meaning} |")
    return rows


def _params(params: list[Param], owners: dict[str, list[str]] | None = None) -> list[str]:
    head = "| key | type | default | " + ("protocols | " if owners else "") + "meaning |"
    rows = [head, "|---|---|---|" + ("---|" if owners else "") + "---|"]
    for p in params:
        default = "unset" if p.default is None and p.optional else _toml(p.default)
        who = f" {', '.join(owners[p.name])} |" if owners else ""
        rows.append(f"| `{p.name}` | {_cell(p.allowed)} | `{default}` |{who} {_cell(p.help)} |")
    return rows


def _filters() -> list[str]:
    from study.sweep.signals import SignalFilter
    from taxonomy.components import AXES

    rows = ["| key | type | meaning |", "|---|---|---|"]
    for name, info in SignalFilter.model_fields.items():
        if name in AXES:
            ids = ", ".join(f"`{m.id}`" for m in AXES[name])
            rows.append(f"| `{name}` | an id or a list of ids: {ids} | {_cell(info.description or '')} |")
        else:
            rows.append(f"| `{name}` | true or false (default `false`) | {_cell(info.description or '')} |")
    return rows


def reference() -> str:
    """The generated part of docs/spec.md (markdown, between :data:`BEGIN` and :data:`END`)."""
    from study.protocols import PROTOCOLS, all_parameters, owners
    from study.saliency import SaliencyData

    params = list(all_parameters().values())
    out = [BEGIN, "", "### `[sweep]`", "", *_section(MODELS["sweep"]), ""]
    out += ["### `[resources]`", "", *_section(MODELS["resources"]), ""]
    out += ["### `[[runs]]`", "", *_section(MODELS["runs"]), ""]
    out += ["The protocols (`protocol = ...`):", ""]
    out += [f"- `{cls.name}`: {cls.summary}" for cls in PROTOCOLS.values()]
    out += [
        "",
        "Their parameters (the other keys of a `[[runs]]` table; each applies to the protocols listed):",
        "",
    ]
    out += [*_params(params, {p.name: owners(p.name) for p in params}), ""]
    out += [
        "### `[rank_quality]`",
        "",
        *_section(MODELS["rank_quality"]) + _params(parameters(SaliencyData))[2:],
    ]
    out += ["", "### Signal filter tables (items of `signals`)", "", *_filters(), "", END]
    return "\n".join(out)


def documented_keys() -> dict[str, set[str]]:
    """Every key the parser accepts, per section (what docs/spec.md must document)."""
    from study.protocols import all_parameters
    from study.saliency import SaliencyData
    from study.sweep.signals import FILTER_KEYS

    keys = {section: set(model.model_fields) for section, model in MODELS.items()}
    keys["runs"] |= set(all_parameters())
    keys["rank_quality"] |= {p.name for p in parameters(SaliencyData)}
    keys["filter"] = set(FILTER_KEYS)
    return keys


def rewrite(text: str) -> str:
    """``text`` with its generated block replaced by :func:`reference`."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"no generated block ({BEGIN} ... {END}) to replace")
    head, rest = text.split(BEGIN, 1)
    return head + reference() + rest.split(END, 1)[1]


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/spec.md")
    target.write_text(rewrite(target.read_text()))
    print(f"rewrote the generated key reference of {target}")
