"""The decision table as a report section: the model and its figures are :mod:`reports.cost.decision`'s;
this module only lays them out (the header, formatted cells, the answer above the table and the
assumptions beneath it), so the cost stage never imports the tables."""

from __future__ import annotations

from reports.cost.decision import DecisionTable
from reports.tables.base import Section, Table, fmt

DECISION_TITLE = "Decision: the cost of this workload"


def decision_section(table: DecisionTable) -> Section:
    """The report's opening section when a workload is given: the table, the answer, the assumptions."""
    header = (
        "option",
        "price",
        "capacity (requests/s)",
        "capacity (tokens/s)",
        "instances",
        "monthly cost (USD)",
        "effective USD / M tokens",
        "utilization",
        "meets target",
    )
    rows = tuple(
        (
            row.option,
            row.price.name,
            fmt(row.capacity_requests_per_s, ",.1f"),
            fmt(row.capacity_tokens_per_s, ",.0f"),
            "per token" if row.price.usd_per_million_tokens is not None else fmt(row.instances, "d"),
            fmt(row.monthly_cost_usd, ",.2f"),
            fmt(row.effective_usd_per_million_tokens, ".4f"),
            fmt(row.utilization_pct, ".1f") + ("%" if row.utilization_pct is not None else ""),
            ("yes" if row.meets_target else "no") + f" ({row.note})",
        )
        for row in table.rows
    )
    if table.cheapest is None:
        answer = f"No option meets the target ({table.target}) for this workload."
    else:
        answer = (
            f"Cheapest option that meets the target: {table.cheapest.option} ({table.cheapest.price.name}), "
            f"{table.cheapest.monthly_cost_usd:,.2f} USD a month, "
            f"{table.cheapest.effective_usd_per_million_tokens:.4f} USD per million tokens."
        )
    return Section(
        title=DECISION_TITLE,
        text=f"Workload: {table.workload.describe()}. Target: {table.target}. {answer}",
        bullets=table.assumptions,
        tables=(
            Table(
                "decision",
                "Monthly cost at the target",
                "instances, cost and effective price per option for this workload",
                header,
                rows,
            ),
        ),
    )
