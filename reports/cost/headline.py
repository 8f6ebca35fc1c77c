"""The headline figures: how each is read from a run or from the study, and how it is computed.

The study never said how it averaged, so every headline figure carries its definition, printed
under the summary table; ``summary.csv`` uses the same keys as the study's own ``summary.csv``
where the figure is the same one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reports.cost.columns import Column, RunColumn


@dataclass(frozen=True)
class SummaryMetric:
    """A headline figure: how to get it from a run, the study's name for it, how it is computed."""

    key: str
    label: str
    spec: str
    of_run: Callable[[RunColumn], float | None]
    study_key: str | None
    definition: str

    def value(self, column: Column) -> float | None:
        if isinstance(column, RunColumn):
            return self.of_run(column)
        return column.summary.get(self.study_key) if self.study_key else None


def _cost_at_mean(column: RunColumn) -> float | None:
    return column.cost.usd_per_million_tokens_at_mean if column.cost else None


def _cost_at_peak(column: RunColumn) -> float | None:
    return column.cost.usd_per_million_tokens_at_peak if column.cost else None


SUMMARY_METRICS: tuple[SummaryMetric, ...] = (
    SummaryMetric(
        "request_count",
        "requests measured",
        ",.0f",
        lambda c: c.metrics.request_count,
        None,
        "completed measured requests over all cells, failed ones included (warm-up excluded)",
    ),
    SummaryMetric(
        "request_success_rate_pct",
        "request success rate (%)",
        ".1f",
        lambda c: c.metrics.success_rate_pct,
        "request_success_rate_pct",
        "successful requests / all measured requests, pooled over all cells",
    ),
    SummaryMetric(
        "latency_s",
        "latency (s)",
        ".2f",
        lambda c: c.metrics.mean_latency_ms / 1000,
        "latency_s",
        "mean over cells of each cell's mean response time (failed requests included; exact from the "
        "records, else Locust's average), every cell weighted equally, cells where every request failed included (as in the study)",
    ),
    SummaryMetric(
        "normalized_latency_by_success_rate_s",
        "normalized latency (s)",
        ".2f",
        lambda c: c.metrics.normalized_latency_ms / 1000,
        "normalized_latency_by_success_rate_s",
        "latency (s) above / request success rate (as a fraction)",
    ),
    SummaryMetric(
        "token_throughput_tokens_per_s",
        "token throughput, mean over cells (tokens/s)",
        ",.0f",
        lambda c: c.metrics.mean_throughput_tokens_per_s,
        "token_throughput_tokens_per_s",
        "mean over timed cells of per-cell token throughput, each = successful tokens / cell duration "
        "(the study's own average: method not stated)",
    ),
    SummaryMetric(
        "overall_token_throughput_tokens_per_s",
        "token throughput, overall (tokens/s)",
        ",.0f",
        lambda c: c.metrics.overall_throughput_tokens_per_s,
        None,
        "all successful tokens of the timed cells / the sum of their durations",
    ),
    SummaryMetric(
        "peak_token_throughput_tokens_per_s",
        "peak token throughput, best 10 s window (tokens/s)",
        ",.0f",
        lambda c: c.metrics.peak_or_best_cell_tokens_per_s,
        None,
        "the 10 consecutive 1 s bins with the most successful tokens / 10 s (the window is named in the "
        "token throughput section); a run without records: its best cell",
    ),
    SummaryMetric(
        "best_cell_token_throughput_tokens_per_s",
        "best cell token throughput (the study's 'peak', tokens/s)",
        ",.0f",
        lambda c: c.metrics.peak_throughput_tokens_per_s,
        "peak_token_throughput_tokens_per_s",
        "the best cell's successful tokens / cell duration (the cell is named in the token throughput section)",
    ),
    SummaryMetric(
        "price_usd_per_million_tokens",
        "price at mean throughput, the study's way (USD per million tokens)",
        ".4f",
        _cost_at_mean,
        "price_usd_per_million_tokens",
        "a per-token price x the tokens the server billed per token counted; an hourly price / "
        "(mean token throughput x 3600 / 1e6), as the study priced at its average throughput",
    ),
    SummaryMetric(
        "price_at_peak_usd_per_million_tokens",
        "price at peak throughput, the best case (USD per million tokens)",
        ".4f",
        _cost_at_peak,
        None,
        "as above at the peak token throughput (best 10 s window, else best cell): the best case",
    ),
)


SUMMARY_BY_KEY = {metric.key: metric for metric in SUMMARY_METRICS}
