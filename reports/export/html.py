"""``report.html``: one self-contained file -- inline CSS, plots as ``data:`` PNGs, no script, no
external resource -- so it opens offline and can be mailed or attached to a CI run as it is."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from html import escape

from reports.plots.base import Plot
from reports.tables.base import Section, Table, is_figure, numeric_columns

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1280px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; } h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.2rem; font-size: 0.85rem; }
th, td { border: 1px solid #d0d0d0; padding: 0.25rem 0.55rem; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; white-space: normal; min-width: 5rem; vertical-align: bottom; }
td:first-child, th:first-child { text-align: left; }
div.scroll { overflow-x: auto; }
td.text, th.text { text-align: left; white-space: normal; overflow-wrap: anywhere; }
p.definition { color: #555; font-style: italic; margin: 0.2rem 0; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
nav a { margin-right: 0.8rem; }
section.separate { border: 2px solid #8a6d3b; background: #fcf8ef; padding: 0 1rem 0.5rem; margin: 2rem 0; }
section.separate h2 { border-bottom-color: #8a6d3b; }
div.alert { border-left: 5px solid #c0392b; background: #fdecea; padding: 0.5rem 0.8rem; margin: 0.6rem 0;
  font-weight: 600; }
"""


def _anchor(title: str) -> str:
    return "".join(char if char.isalnum() else "-" for char in title.lower())


_CODE_SPAN = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """Escaped text with Markdown's code spans (a command to run) as ``<code>``: the sections are
    written once, in Markdown's inline syntax, and the HTML must not show the backticks."""
    return _CODE_SPAN.sub(r"<code>\1</code>", escape(text))


def render_table(table: Table, heading: bool = True) -> str:
    """A table under its own heading, unless ``heading`` is False (it repeats the section's)."""
    parts = [f'<h3 id="table-{escape(table.key)}">{escape(table.title)}</h3>'] if heading else []
    parts.append(f'<p class="definition">{escape(table.definition)}</p>')
    if not table.rows:
        return "\n".join([*parts, "<p>(none)</p>"])
    # A header is right-aligned over a column of figures; every figure is right-aligned, every text
    # left-aligned, also in tables whose rows are fields (a price beside a price name).
    heads = ["" if numeric else ' class="text"' for numeric in numeric_columns(table)]
    header = "".join(
        f"<th{kind}>{escape(title)}</th>" for kind, title in zip(heads, table.header, strict=True)
    )
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{escape(value)}</td>"
            if index and is_figure(value)
            else f'<td class="text">{escape(value)}</td>'
            for index, value in enumerate(row)
        )
        + "</tr>"
        for row in table.rows
    )
    table_html = f"<table><thead><tr>{header}</tr></thead><tbody>\n{rows}\n</tbody></table>"
    return "\n".join([*parts, f'<div class="scroll">{table_html}</div>'])


def render_plot(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(plot.title)}">'
        f"<figcaption>{escape(plot.title)}</figcaption></figure>"
    )


def render_html(title: str, intro: str, sections: Sequence[Section], plots: Mapping[str, Plot]) -> str:
    nav = " ".join(f'<a href="#{_anchor(section.title)}">{escape(section.title)}</a>' for section in sections)
    body = [f"<h1>{escape(title)}</h1>", f"<p>{escape(intro)}</p>", f"<nav>{nav}</nav>"]
    for section in sections:
        body.append('<section class="separate">' if section.separate else "<section>")
        body.append(f'<h2 id="{_anchor(section.title)}">{escape(section.title)}</h2>')
        body += [f'<div class="alert">⚠ {inline(alert)}</div>' for alert in section.alerts]
        if section.text:
            body.append(f"<p>{inline(section.text)}</p>")
        body += [render_table(table, heading=table.title != section.title) for table in section.tables]
        if section.bullets:
            body.append(
                "<ul>" + "".join(f"<li>{inline(bullet)}</li>" for bullet in section.bullets) + "</ul>"
            )
        body += [render_plot(plots[key]) for key in section.plots if key in plots]
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
