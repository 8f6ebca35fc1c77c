"""The cold-start check (``reports.metrics.cold_start``) over every run with request records under
``benchmarks/results/``: each walk's first-tenth and last-tenth median latency and their ratio, to
see how far warm servers' tenths differ (what sets the check's threshold).

    .venv/bin/python benchmarks/cold_start_scan.py benchmarks/results/cpu2-2026-12-05/cold-start-scan/walks.csv
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from reports.load.runs import load_run
from reports.metrics.cold_start import COLD_START_RATIO, WarmthCheck, run_warmth

RESULTS = Path(__file__).resolve().parent / "results"


def scan(results: Path) -> list[tuple[str, WarmthCheck | tuple[str, str]]]:
    found: list[tuple[str, WarmthCheck | tuple[str, str]]] = []
    for run_json in sorted(results.glob("**/run.json")):
        directory = run_json.parent
        if not (directory / "requests.csv.gz").is_file():
            continue
        warmth = run_warmth(load_run(directory))
        if warmth is None:
            continue
        where = str(directory.relative_to(results.parent.parent))
        found += [(where, check) for check in warmth.checked]
        found += [(where, skipped) for skipped in warmth.not_checked]
    return found


def main(out: Path) -> None:
    walks = scan(RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["run", "walk", "successful_requests", "first_tenth_median_ms", "last_tenth_median_ms",
                         "first_over_last", "flagged", "not_checked"])  # fmt: skip
        for run, check in walks:
            if isinstance(check, WarmthCheck):
                writer.writerow([run, check.cell, check.requests, f"{check.first_median_ms:.1f}",
                                 f"{check.last_median_ms:.1f}", f"{check.ratio:.3f}", int(check.cold), ""])  # fmt: skip
            else:
                writer.writerow([run, check[0], "", "", "", "", "", check[1]])
    ratios = np.array([check.ratio for _, check in walks if isinstance(check, WarmthCheck)])
    print(f"wrote {out}: {len(ratios)} walks checked, {len(walks) - len(ratios)} not checked")
    if len(ratios):
        median, p90 = np.quantile(ratios, [0.5, 0.9])
        print(f"first / last: median {median:.2f}x, 90th percentile {p90:.2f}x, highest {ratios.max():.2f}x; "
              f"above {COLD_START_RATIO:g}x: {(ratios > COLD_START_RATIO).sum()}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
