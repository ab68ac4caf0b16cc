"""A report as an ordered list of blocks, so one build renders to both documents."""

from __future__ import annotations

import pandas as pd

from analysis.report.html import render_html
from analysis.report.markdown import render_markdown

__all__ = ["Block", "Document"]

Block = tuple[str, object]
"""``(kind, body)``: ``("h", (level, text))``, ``("p", text)``, ``("notes", [text, ...])``,
``("table", (string frame, anchor))`` or ``("figure", (name, title, how to read))``."""


class Document:
    """The blocks of a report in reading order, rendered to Markdown and to offline HTML."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def notes(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("notes", list(items)))

    def table(self, frame: pd.DataFrame, anchor: str = "") -> None:
        self.blocks.append(("table", (frame.astype(str), anchor)))

    def figure(self, name: str, title: str, how: str) -> None:
        self.blocks.append(("figure", (name, title, how)))

    def markdown(self) -> str:
        return render_markdown(self.blocks)

    def html(self, title: str) -> str:
        return render_html(self.blocks, title)
