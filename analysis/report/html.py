"""``index.html``: the report's blocks as one self-contained page.

Inline CSS, no scripts and a Content-Security-Policy that forbids the network: the page
must open from a copied folder or an archive, and figures are ``<img>`` with relative
paths (``figures/<name>.png``, the SVG linked next to each).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["render_html"]


def render_html(blocks: Sequence[tuple[str, object]], title: str) -> str:
    """The whole page; headings get ``id`` anchors from their text."""
    body = "\n".join(_block(kind, block) for kind, block in blocks)
    return _HTML.format(title=escape(title), css=_CSS, body=body)


def _block(kind: str, block: object) -> str:
    if kind == "h":
        level, text = block
        return f"<h{level} id='{_slug(text)}'>{_inline_code(escape(text))}</h{level}>"
    if kind == "p":
        return f"<p>{_inline_code(escape(str(block)))}</p>"
    if kind == "notes":
        items = "".join(f"<li>{_inline_code(escape(n))}</li>" for n in block)
        return f"<ul class='notes'>{items}</ul>"
    if kind == "table":
        return _table(*block)
    name, text, how = block
    return (
        f"<figure><img src='figures/{name}.png' alt='{escape(text)}'>"
        f"<figcaption><b>{escape(text)}</b> (<a href='figures/{name}.svg'>SVG</a>). "
        f"<i>How to read:</i> {_inline_code(escape(how))}</figcaption></figure>"
    )


def _table(frame: pd.DataFrame, anchor: str) -> str:
    table = _CODE.sub(r"<code>\1</code>", frame.to_html(index=False, border=0, classes="data"))
    if anchor:
        table = table.replace("<table ", f"<table id='{anchor}' ", 1)
    return f"<div class='scroll'>{table}</div>"


def _slug(text: str) -> str:
    """A heading's anchor: lower case, every non-alphanumeric a hyphen."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


_CODE = re.compile(r"`([^`<>]*)`")


def _inline_code(text: str) -> str:
    """Markdown-style `code` spans -> <code> (the text is already HTML-escaped)."""
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;
max-width:1250px;padding:1em 2em;color:#222;line-height:1.45}
h1{font-size:1.7em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.data{border-collapse:collapse;font-size:.88em;margin:.5em 0 1em}
table.data th,table.data td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:right}
table.data th{background:#f4f4f4}table.data td:has(code){text-align:left}
.scroll{overflow-x:auto}figure{margin:1em 0 2.5em}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{font-size:.92em;color:#333;max-width:60em}
ul.notes{background:#fff8e1;border-left:4px solid #f0b400;padding:.6em 1em .6em 2em}
code{font-size:.92em;background:#f4f4f4;padding:0 .2em}
"""

_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>{css}</style></head>
<body>
{body}
</body></html>
"""
