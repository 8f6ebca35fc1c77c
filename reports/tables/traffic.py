"""The traffic section: a replayed trace's SLO attainment over time, and figures per passage-length
band and per shape wherever passage lengths vary (``reports.metrics.traffic``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from reports.metrics.rates import RateRun
from reports.metrics.traffic import GroupFigures, SloWindow, TrafficFigures
from reports.tables.base import Section, Table, fmt

GROUP_HEADER = ("run", "group", "requests", "success %", "p50 ms", "p95 ms", "tokens/request", "padding %")
PADDING_NOTE = (
    "Padding %: the share of batch x longest passage that is padding, 1 - tokens / (batch x longest): "
    "what a forward pass of the request alone computes in vain (the bundled server's --batching none); "
    "micro-batching pads across requests, which the server's own counters give (the server padding line, where the bundled server served the run)."
)


def _group_rows(label: str, groups: Sequence[GroupFigures]) -> list[tuple[str, ...]]:
    return [
        (
            label,
            group.label,
            f"{group.requests:,}",
            fmt(group.success_pct, ".1f"),
            fmt(group.p50_ms, ",.0f"),
            fmt(group.p95_ms, ",.0f"),
            fmt(group.mean_tokens, ",.0f"),
            fmt(group.padding_pct, ".1f"),
        )
        for group in groups
    ]


def _trace_time(traffic: TrafficFigures, window: SloWindow) -> str:
    """The window's start in the trace's own clock (hh:mm), where the replay maps to it linearly."""
    trace = traffic.trace or {}
    if trace.get("max_gap_s") is not None or "start_s" not in trace:
        return "-"
    at = trace["start_s"] + window.start_s * trace.get("speed", 1.0)
    if trace.get("times") == "timestamp":
        return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M")
    return f"{int(at // 3600) % 24:02d}:{int(at % 3600 // 60):02d}"


def slo_table(runs: Sequence[RateRun]) -> Table | None:
    rows = [
        (
            run.label,
            f"{window.start_s:,.1f}-{window.end_s:,.1f}",
            _trace_time(run.traffic, window),
            f"{window.offered:,}",
            fmt(window.success_pct, ".1f"),
            fmt(window.p95_ms, ",.0f"),
            fmt(window.attainment_pct, ".1f"),
        )
        for run in runs
        if run.traffic is not None
        for window in run.traffic.windows
    ]
    if not rows:
        return None
    return Table(
        "slo_over_time",
        "SLO attainment over the replay",
        "each window of planned send time: requests offered, success, p95 of the successes, and the share "
        "of offered requests that succeeded within the latency target (dropped and failed ones miss)",
        ("run", "replay s", "trace time", "offered", "success %", "p95 ms", "within target %"),
        tuple(rows),
    )


def _bullets(run: RateRun) -> list[str]:
    traffic = run.traffic
    assert traffic is not None
    bullets = []
    if traffic.trace:
        trace = traffic.trace
        cut = f", idle gaps cut to {trace['max_gap_s']:g} s" if trace.get("max_gap_s") else ""
        bullets.append(
            f"{run.label}: replay of {trace['file']} ({trace['rows']:,} requests over {trace['span_s'] / 3600:.2f} h "
            f"of log) at {trace['speed']:g}x{cut}, in {trace['replay_s']:,.1f} s; SHA-256 {trace['sha256'][:12]}"
        )
        if trace["replay_s"] > 0 and trace["span_s"] > 0:
            logged, replayed = trace["rows"] / trace["span_s"], trace["rows"] / trace["replay_s"]
            bullets.append(
                f"{run.label}: the replay offered {replayed:.3g} requests/s on average, {replayed / logged:,.0f}x the "
                f"log's {logged:.3g}: compressing time multiplies the load (bursts included), so this is a stress "
                "test of the traffic's shape (as --workload, the log is priced at its own rate)"
            )
    if traffic.attainment_pct is not None:
        bullets.append(
            f"{run.label}: {traffic.attainment_pct:.1f}% of the requests succeeded within {traffic.target_ms:g} ms"
        )
    elif traffic.trace:
        bullets.append(
            f"{run.label}: no latency target recorded (run --trace with --slo-p95-ms to get attainment)"
        )
    padding = traffic.server_padding
    if padding:
        bullets.append(
            f"{run.label}: server padding {padding['waste_pct']:.1f}% of the {padding['padded_tokens']:,} tokens "
            f"its forward passes computed ({padding['tokens']:,} real), from the server's /metrics"
        )
    return bullets


def traffic_section(runs: Sequence[RateRun]) -> Section | None:
    """None when no run replays a trace or varies its passage lengths."""
    with_traffic = [run for run in runs if run.traffic is not None]
    if not with_traffic:
        return None
    bands = [row for run in with_traffic for row in _group_rows(run.label, run.traffic.bands)]
    shapes = [row for run in with_traffic for row in _group_rows(run.label, run.traffic.shapes)]
    tables = [
        slo_table(with_traffic),
        Table(
            "length_bands",
            "By passage length",
            "measured requests by the power-of-two band of their longest passage; latency from the planned send time",
            GROUP_HEADER,
            tuple(bands),
        ),
        Table(
            "traffic_shapes",
            "By shape",
            "measured requests by batch size and band of the longest passage",
            GROUP_HEADER,
            tuple(shapes),
        ),
    ]
    return Section(
        "Traffic: a trace and varied lengths",
        tables=tuple(table for table in tables if table is not None),
        bullets=(*(bullet for run in with_traffic for bullet in _bullets(run)), PADDING_NOTE),
    )
