"""Does a written report agree with itself? Every mean rank ``summary.md`` prints against the
data of the critical-difference diagrams.

Each ranking table of ``summary.md`` is preceded by a reference to its rank data,
``figures/mean_ranks__<label>.csv`` (the mean ranks the table prints and the label's CD
diagram draws). :func:`check_report` reads the documents back and checks that

- every table with a ``mean rank`` column follows such a reference, and every printed
  mean rank equals the CSV's value to the two decimals printed (``–`` exactly for the
  signals the CSV leaves out: those not run on every task);
- the printed mean ranks never decrease down a table (tables are ordered by them);
- every signal a CD diagram draws (``figures/cd_diagram__<label>.svg``) carries the
  CSV's mean rank in its label, to the one decimal drawn.

Run it on any report folder: ``python -m analysis.report.consistency results/demo/report``
(exit status 1 and one line per problem when something disagrees).
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pandas as pd

from analysis.plots import unique_labels

__all__ = ["check_report", "rank_tables"]

_REF = re.compile(r"figures/(mean_ranks__[^`\s)]+\.csv)")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def rank_tables(summary: str) -> list[tuple[str | None, pd.DataFrame]]:
    """Every Markdown table of ``summary`` with a ``mean rank`` column, with the rank-data
    CSV named last before it (``None`` when none was)."""
    out, csv, lines, i = [], None, summary.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        found = _REF.findall(line)
        if found:
            csv = found[-1]
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header, rows, i = _cells(line), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            if "mean rank" in header and "signal" in header:
                out.append((csv, pd.DataFrame(rows, columns=header)))
            continue
        i += 1
    return out


def _svg_texts(path: Path) -> set[str]:
    root = ET.parse(path).getroot()
    return {"".join(el.itertext()).strip() for el in root.iter() if el.tag.endswith("text")}


def check_report(folder: str | Path) -> list[str]:
    """The disagreements found in the report under ``folder`` (empty: it agrees with itself)."""
    folder = Path(folder)
    figures = folder / "figures"

    @cache
    def ranks(name: str) -> pd.Series:
        data = pd.read_csv(figures / name)
        return data.set_index("signal")["mean_rank"]

    problems = []
    for n, (csv, table) in enumerate(rank_tables((folder / "summary.md").read_text(encoding="utf-8")), 1):
        if csv is None or not (figures / csv).is_file():
            problems.append(
                f"table {n}: no rank data ({csv or 'no figures/mean_ranks__*.csv named before it'})"
            )
            continue
        problems += _check_table(f"table {n} ({csv})", table, ranks(csv))
    for svg in sorted(figures.glob("cd_diagram__*.svg")):
        csv = f"mean_ranks__{svg.stem.removeprefix('cd_diagram__')}.csv"
        if not (figures / csv).is_file():
            problems.append(f"{svg.name}: no {csv} next to it")
            continue
        problems += _check_cd(svg, pd.read_csv(figures / csv))
    return problems


def _check_table(where: str, table: pd.DataFrame, ranks: pd.Series) -> list[str]:
    problems, last = [], float("-inf")
    for signal, printed in zip(table["signal"].str.strip("`"), table["mean rank"], strict=True):
        if printed == "–":
            if signal in ranks.index:
                problems.append(
                    f"{where}: `{signal}` prints no mean rank, the rank data has {ranks[signal]:.2f}"
                )
            continue
        if signal not in ranks.index:
            problems.append(f"{where}: `{signal}` prints mean rank {printed}, absent from the rank data")
            continue
        if f"{ranks[signal]:.2f}" != printed:
            problems.append(
                f"{where}: `{signal}` prints mean rank {printed}, the rank data has {ranks[signal]:.2f}"
            )
        if float(printed) < last:
            problems.append(f"{where}: `{signal}` ({printed}) is listed after a worse mean rank ({last:.2f})")
        last = max(last, float(printed))
    return problems


def _check_cd(svg: Path, data: pd.DataFrame) -> list[str]:
    drawn = data[data["in_cd_diagram"].astype(bool)]
    labels = unique_labels(list(drawn["signal"]))
    texts = _svg_texts(svg)
    problems = []
    for signal, rank in zip(drawn["signal"], drawn["mean_rank"], strict=True):
        label = labels[signal]
        if f"{label} ({rank:.1f})" not in texts and f"({rank:.1f}) {label}" not in texts:
            problems.append(f"{svg.name}: no label `{label} ({rank:.1f})` for `{signal}`")
    return problems


if __name__ == "__main__":  # pragma: no cover - a command for real report folders
    found = check_report(sys.argv[1] if len(sys.argv) > 1 else "results/demo/report")
    print("\n".join(found) or "the report agrees with itself")
    sys.exit(1 if found else 0)
