"""The shipped sample trace: a synthetic day of a small team's embedding traffic.

``embed_bench/data/sample_trace.csv`` is what ``make demo`` replays and what the decision table
prices as "the team's own traffic" when no log of the team's own is given. It is generated, not
recorded: :func:`sample_trace_rows` is seeded, and a test checks that the shipped file is its output.

The day (times are ``offset_s`` from midnight):

- **queries**: one passage each, lengths lognormal around 16 tokens (a search box), arriving as a
  Poisson process whose rate follows office hours: a night floor, a morning rise, a peak after lunch
  and an evening fall (``QUERY_RATE_PER_HOUR``);
- **indexing bursts**: at 02:00 and 13:00 a job embeds a batch of documents, 8 passages per request,
  lengths lognormal around 120 tokens up to 256 (the bundled model's limit), requests a few seconds
  apart for ten minutes. The 13:00 burst lands on the query peak: that is where a latency target is
  at risk.

Pure Python, seeded by a string: the same file on every platform.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

SAMPLE_TRACE = Path(__file__).resolve().parents[1] / "data" / "sample_trace.csv"
HEADER = ("offset_s", "batch_size", "tokens")
# Queries per hour, hour 0 to 23: about 1,000 a day.
QUERY_RATE_PER_HOUR = (
    6,
    4,
    3,
    3,
    3,
    5,
    10,
    25,
    55,
    75,
    80,
    75,
    60,
    85,
    90,
    80,
    70,
    55,
    35,
    25,
    20,
    15,
    10,
    8,
)
BURSTS = ((2 * 3600.0, 60), (13 * 3600.0, 60))  # (start, requests), 10 s apart on average
BURST_BATCH = 8


def _lognormal_tokens(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return min(max(round(median * math.exp(sigma * rng.gauss(0.0, 1.0))), low), high)


def sample_trace_rows(seed: str = "embed-bench sample trace v1") -> list[tuple[float, int, str]]:
    """(offset_s, batch_size, tokens) rows of the sample day, in time order."""
    rng = random.Random(seed)
    rows: list[tuple[float, int, str]] = []
    for hour, per_hour in enumerate(QUERY_RATE_PER_HOUR):
        at = hour * 3600.0 + rng.expovariate(per_hour / 3600.0)
        while at < (hour + 1) * 3600.0:
            rows.append((round(at, 3), 1, str(_lognormal_tokens(rng, 16, 0.6, 2, 128))))
            at += rng.expovariate(per_hour / 3600.0)
    for start, count in BURSTS:
        at = start
        for _ in range(count):
            lengths = [_lognormal_tokens(rng, 120, 0.5, 16, 256) for _ in range(BURST_BATCH)]
            rows.append((round(at, 3), BURST_BATCH, " ".join(map(str, lengths))))
            at += rng.expovariate(1 / 10.0)
    rows.sort(key=lambda row: row[0])
    return rows


def sample_trace_text() -> str:
    lines = [",".join(HEADER)]
    lines += [f"{offset:.3f},{batch},{tokens}" for offset, batch, tokens in sample_trace_rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    SAMPLE_TRACE.write_text(sample_trace_text())
    print(f"wrote {SAMPLE_TRACE}")
