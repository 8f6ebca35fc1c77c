"""The decision table as a report section: the model and its figures are :mod:`reports.cost.decision`'s;
this module only lays them out (the answer above the table, one row per measured option and price,
the options not measured named once beneath it with the command that would measure each, and the
assumptions), so the cost stage never imports the tables."""

from __future__ import annotations

from reports.cost.decision import DecisionRow, DecisionTable
from reports.cost.numbers import three_figures
from reports.tables.base import Section, Table, fmt

DECISION_TITLE = "Decision: the cost of this workload"
HEADER = (
    "option",
    "price",
    "capacity (requests/s)",
    "instances",
    "monthly cost (USD)",
    "effective USD / M tokens",
    "utilization",
    "meets target",
)


def _capacity(row: DecisionRow) -> str:
    """The capacity provisioned, with its interval where the search gave one."""
    figure = fmt(row.capacity_requests_per_s, ",.1f")
    if row.capacity_interval_requests_per_s is None:
        return figure
    low, high = row.capacity_interval_requests_per_s
    return f"{figure} ({low:,.1f}-{high:,.1f})"


def _verdict(row: DecisionRow, table: DecisionTable | None = None) -> str:
    verdict = ("yes" if row.meets_target else "no") + f" ({row.note})"
    if table is not None and (row is table.cheapest or row in table.equal_to_cheapest):
        verdict = (
            "THE ANSWER" if not table.equal_to_cheapest else "THE ANSWER, EQUAL WITHIN NOISE"
        ) + f": {verdict}"
    if row.hardware_note:
        verdict += f"; PRICE NOT MATCHED TO HARDWARE: {row.hardware_note}"
    return verdict


AUTOSCALED = "autoscaled (USD/month)"


def _row(row: DecisionRow, autoscaled: bool, table: DecisionTable | None = None) -> tuple[str, ...]:
    cells = [
        row.option,
        row.price.name,
        _capacity(row),
        "per token" if row.price.usd_per_million_tokens is not None else fmt(row.instances, "d"),
        fmt(row.monthly_cost_usd, ",.2f"),
    ]
    if autoscaled:  # a per-token API bills the same volume either way
        per_token = row.price.usd_per_million_tokens is not None
        cells.append(fmt(row.monthly_cost_usd if per_token else row.monthly_cost_autoscaled_usd, ",.2f"))
    return (
        *cells,
        fmt(row.effective_usd_per_million_tokens, ".4f"),
        fmt(row.utilization_pct, ".1f") + ("%" if row.utilization_pct is not None else ""),
        _verdict(row, table),
    )


def answer(table: DecisionTable) -> str:
    """The sentence the report opens with: drawn only from measured options priced on their hardware."""
    cheapest, elsewhere = table.cheapest, table.cheapest_on_other_hardware
    if cheapest is None:
        text = f"No measured option meets the target ({table.target}) for this workload on the hardware it ran on."
    else:
        text = (
            f"Cheapest measured option that meets the target: {cheapest.option} at {cheapest.price.name}, "
            f"{cheapest.monthly_cost_usd:,.2f} USD a month, "
            f"{three_figures(cheapest.effective_usd_per_million_tokens)} USD per million tokens"
            + (
                f", or {cheapest.monthly_cost_autoscaled_usd:,.2f} USD a month autoscaled over the day's profile"
                if cheapest.monthly_cost_autoscaled_usd is not None
                else ""
            )
            + (
                f" (provisioned at the lower bound of its capacity interval, {cheapest.capacity_requests_per_s:,.1f} requests/s)."
                if cheapest.capacity_interval_requests_per_s
                else "."
            )
        )
    if table.equal_to_cheapest:
        names = ", ".join(
            f"{row.option} at {row.price.name} ({row.monthly_cost_usd:,.2f} USD a month)"
            for row in table.equal_to_cheapest
        )
        text += f" Equal to it within the measurement's noise, so no winner between them: {names}."
    if elsewhere is not None:
        text += (
            f" {elsewhere.option} at {elsewhere.price.name} would cost {elsewhere.monthly_cost_usd:,.2f} USD a "
            f"month, but that price is not matched to the hardware measured ({elsewhere.hardware_note}): "
            "not an answer."
        )
    if table.not_measured:
        names = ", ".join(f"{row.option} ({row.price.name})" for row in table.not_measured)
        text += f" Not measured, so not considered: {names}; see below."
    return text


def not_measured_lines(table: DecisionTable) -> tuple[str, ...]:
    """One line per option without a capacity: its list price for information, and how to measure it."""
    lines = []
    for row in table.not_measured:
        price = (
            f"list price at this workload {row.monthly_cost_usd:,.2f} USD a month (information, not an answer)"
            if row.monthly_cost_usd is not None
            else "no capacity search in this run"
        )
        limit = f"; {row.note.split('; ', 1)[1]}" if "; " in row.note else ""
        how = f"; measure it with: `{row.measure_command}`" if row.measure_command else ""
        lines.append(f"Not measured: {row.option} ({row.price.name}): {price}{limit}{how}")
    return tuple(lines)


def decision_section(table: DecisionTable) -> Section:
    """The report's opening section when a workload is given: the answer, the table, what was not
    measured, the assumptions."""
    autoscaled = table.workload.profile is not None
    return Section(
        title=DECISION_TITLE,
        text=f"Workload: {table.workload.describe()}. Target: {table.target}. {answer(table)}",
        bullets=not_measured_lines(table) + table.assumptions,
        tables=(
            Table(
                "decision",
                "Monthly cost at the target",
                "measured options: instances (at the lower bound of the capacity interval where there is one), "
                "cost and effective price per option and price for this workload",
                (*HEADER[:5], AUTOSCALED, *HEADER[5:]) if autoscaled else HEADER,
                tuple(_row(row, autoscaled, table) for row in table.rows),
            ),
        ),
    )
