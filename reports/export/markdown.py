"""``report.md``: the sections as GitHub-flavoured Markdown, plots linked as PNG files beside it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reports.plots.base import Plot
from reports.tables.base import Section, Table, numeric_columns


def _cell(text: str) -> str:
    """Markdown table cells cannot hold pipes or line breaks."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(table: Table, heading: bool = True) -> str:
    """A table under its own heading, unless ``heading`` is False (it repeats the section's)."""
    lines = [f"### {table.title}", ""] if heading else []
    lines += [f"_{table.definition}_", ""]
    if not table.rows:
        return "\n".join([*lines, "(none)", ""])
    lines.append("| " + " | ".join(_cell(title) for title in table.header) + " |")
    lines.append("|" + "|".join("---:" if numeric else "---" for numeric in numeric_columns(table)) + "|")
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in table.rows]
    return "\n".join([*lines, ""])


def render_markdown(title: str, intro: str, sections: Sequence[Section], plots: Mapping[str, Plot]) -> str:
    parts = [f"# {title}", "", intro, ""]
    for section in sections:
        lines = [f"## {section.title}", ""]
        lines += [f"> **⚠ {alert}**\n" for alert in section.alerts]
        if section.text:
            lines += [section.text, ""]
        lines += [render_table(table, heading=table.title != section.title) for table in section.tables]
        if section.bullets:
            lines += [*(f"- {bullet}" for bullet in section.bullets), ""]
        for key in section.plots:
            if key in plots:
                lines += [f"![{plots[key].title}]({plots[key].filename})", ""]
        if section.separate:  # a quoted block, fenced by rules, so it cannot pass for our figures
            quoted = "\n".join(lines).splitlines()
            lines = ["---", "", *(f"> {line}" if line else ">" for line in quoted), "", "---", ""]
        parts += lines
    return "\n".join(parts)
