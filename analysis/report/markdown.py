"""``summary.md``: the report's blocks as GitHub-flavoured Markdown."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["render_markdown"]


def render_markdown(blocks: Sequence[tuple[str, object]]) -> str:
    """The whole document; figures point at ``figures/<name>.png`` with the SVG linked."""
    return "\n\n".join(_block(kind, body) for kind, body in blocks) + "\n"


def _block(kind: str, body: object) -> str:
    if kind == "h":
        return f"{'#' * body[0]} {body[1]}"
    if kind == "p":
        return str(body)
    if kind == "notes":
        return "\n".join(f"- **Note:** {n}" for n in body)
    if kind == "table":
        return _md_table(body[0])
    name, title, how = body
    return f"![{title}](figures/{name}.png)\n\n*{title}* ([SVG](figures/{name}.svg)). {how}"


def _md_table(frame: pd.DataFrame) -> str:
    """A pipe table of a string frame (pipes escaped, newlines flattened)."""

    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(str(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
