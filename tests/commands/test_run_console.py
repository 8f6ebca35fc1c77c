"""What ``embed-bench run`` prints as a run goes: the banner, each cell's outcome with its ETA where
one can be made, each
capacity step's p95 and verdict (from the real ``CapacityRun``'s capacity.json), the answer."""

from __future__ import annotations

import json
from pathlib import Path

from embed_bench.commands.run import Progress, RunPlan, _run_banner, capacity_answer, capacity_of
from embed_bench.core.capacity import Target
from embed_bench.core.capacity_run import CapacityRun
from embed_bench.core.cells import CapacitySpec, CellRecord, CellsCsv, Grid, grid_of
from embed_bench.core.contract import Cell, Shape
from embed_bench.core.options import BenchOptions
from tests.core.test_capacity_run import record


def plan_of(out: Path, grid: Grid) -> RunPlan:
    return RunPlan(
        backend="self-hosted",
        host="http://127.0.0.1:8000",
        grid_spec=grid.name,
        grid=grid,
        out=out,
        workers=1,
        label="x",
        pricing=None,
        locust_args=[],
        env={},
    )


def capacity_grid(p95_ms: float = 500.0) -> Grid:
    options = BenchOptions.from_mapping(
        {
            "grid": "capacity",
            "slo_p95_ms": p95_ms,
            "request_rate": 4.0,
            "batch_size": 1,
            "passage_tokens": 128,
        }
    )
    return grid_of(options, 1)


def test_the_banner_of_a_capacity_search_says_what_it_searches(tmp_path: Path) -> None:
    banner = _run_banner(plan_of(tmp_path, capacity_grid()))
    assert "0 cells" not in banner
    assert "a capacity search (b=1 t=128 at p95 <= 500 ms and >= 99.9% ok, from 4 requests/s)" in banner


def test_the_banner_says_the_model_and_path_the_requests_go_to(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, capacity_grid())
    plan.locust_args = ["--model", "minilm", "--embeddings-path", "/embeddings"]  # as found on Infinity
    assert _run_banner(plan).startswith(
        "self-hosted at http://127.0.0.1:8000 (model 'minilm', POST /embeddings): "
    )
    plan.locust_args = []
    assert _run_banner(plan).startswith("self-hosted at http://127.0.0.1:8000: ")


def test_each_capacity_step_shows_its_p95_and_verdict_and_confirmation_steps_are_labelled(
    tmp_path: Path,
) -> None:
    """The real search writes capacity.json after each step; the console line of a step waits for it."""
    spec = CapacitySpec(
        shapes=(Shape(1, 128),),
        target=Target(200.0, 99.0),
        start_rate=10,
        step_duration_s=10,
        confirm_repeats=1,
    )
    grid = Grid("capacity", (), "", spec)
    lines: list[str] = []
    progress = Progress(plan_of(tmp_path, grid), lines.append)
    search, cells, records = CapacityRun(spec, tmp_path), CellsCsv(tmp_path), []
    for _step in range(20):  # 10/s met (50 ms), 20/s missed (900 ms), then bisection and confirmation
        step = search.next_step()
        if step is None:
            break
        row = CellRecord(step, start=100.0, repeat=search.repeat, planned=100, users=8)
        records.append(row)
        cells.write(records)
        progress.poll()
        row.end, row.completed, row.succeeded = 110.0, 100, 100
        cells.write(records)
        progress.poll()  # counts in, p95 not yet: no line
        # A rate tried again (a confirmation step) runs as a repeat of its cell.
        search.on_rows(
            [
                record(step.name, 50.0 if step.request_rate < 14 else 900.0)._replace(repeat=search.repeat)
                for _ in range(100)
            ]
        )
        assert search.measured(step.name, search.repeat)
        progress.poll()
    search.finish()
    progress.poll(final=True)
    outcomes = [line for line in lines if "running" not in line]
    assert outcomes[0] == "[1] r=10 b=1 t=128: 100/100 ok in 10.0 s, p95 50 ms: met (<= 200 ms)"
    assert outcomes[1] == "[2] r=20 b=1 t=128: 100/100 ok in 10.0 s, p95 900 ms: missed (<= 200 ms)"
    assert any(line.startswith("[") and "] confirmation r=" in line for line in outcomes)
    assert len(outcomes) == len(records)  # every step shown once


def test_a_step_that_misses_on_success_says_so() -> None:
    from embed_bench.commands.run import step_verdict

    slo = {"p95_ms": 500.0, "success_pct": 99.9}
    assert step_verdict({"p95_latency_ms": 120.4, "meets": False, "success_pct": 97.0}, slo) == (
        "p95 120 ms: missed (97.0% ok < 99.9%)"
    )
    assert step_verdict({"p95_latency_ms": 412.0, "meets": True, "success_pct": 100.0}, slo) == (
        "p95 412 ms: met (<= 500 ms)"
    )


def test_the_answer_line_reads_run_json_capacity(tmp_path: Path) -> None:
    (tmp_path / "capacity.json").write_text(
        json.dumps(
            {
                "slo": {"p95_ms": 500.0, "success_pct": 99.9},
                "capacity": {
                    "requests_per_s": 26.0,
                    "tokens_per_s": 3354.2,
                    "converged": True,
                    "at_rate_limit": False,
                    "steps": [],
                    "interval": {"lower_requests_per_s": 24.0, "upper_requests_per_s": 28.0},
                },
            }
        )
    )
    assert capacity_answer(capacity_of(tmp_path)) == (
        "capacity 26 requests/s (95% interval 24-28), 3,354 tokens/s at p95 <= 500 ms and >= 99.9% ok"
    )
    assert capacity_answer({}) is None
    nothing = {
        "slo": {"p95_ms": 5.0, "success_pct": 99.9},
        "capacity": {"requests_per_s": 0, "steps": [{"rate_per_s": 4.0}]},
    }
    assert capacity_answer(nothing) == (
        "capacity: no rate tried meets p95 <= 5 ms and >= 99.9% ok (lowest rate tried: 4 requests/s)"
    )
    # Infinity on 2 cores (journeys/infinity.txt): every confirmation missed, down to 2.61/s
    nothing["capacity"]["confirmation"] = [{"rate_per_s": 5.0}, {"rate_per_s": 2.61003}]
    assert capacity_answer(nothing).endswith("(lowest rate tried: 2.61 requests/s)")


def test_a_first_walk_gives_no_eta_only_the_cells_left(tmp_path: Path) -> None:
    """Three cells of 2 s each took 30 s: the 7 left differ from them (concurrency 4 to 10), so no
    figure is extrapolated from the first three ("ETA 0:13" with 45 s left, once)."""
    cells = tuple(Cell(concurrency=c, batch_size=1, passage_tokens=16) for c in range(1, 11))
    now = [1000.0]
    lines: list[str] = []
    progress = Progress(plan_of(tmp_path, Grid("g", cells)), lines.append, clock=lambda: now[0])
    records = [
        CellRecord(cell, start=1000.0 + 10 * i, end=1002.0 + 10 * i, planned=5, completed=5, succeeded=5)
        for i, cell in enumerate(cells[:3])
    ]
    CellsCsv(tmp_path).write(records)
    now[0] = 1030.0
    progress.poll()
    assert lines[-1].endswith("; 7 cells left"), lines
    assert not any("ETA" in line for line in lines), lines


def test_a_repeat_gets_an_eta_from_each_cells_wall_time_in_the_first_walk(tmp_path: Path) -> None:
    """Cell a took 10 s of wall time (preparation included), cell b 100 s: with a done again, b's
    100 s are what is left."""
    cells = (
        Cell(concurrency=1, batch_size=1, passage_tokens=16),
        Cell(concurrency=1, batch_size=128, passage_tokens=8192),
    )
    plan = plan_of(tmp_path, Grid("g", cells))
    plan.repeats = 2
    now = [1000.0]
    lines: list[str] = []
    progress = Progress(plan, lines.append, clock=lambda: now[0])
    spans = [(1008.0, 1010.0, 0), (1030.0, 1110.0, 0), (1112.0, 1120.0, 1)]
    records: list[CellRecord] = []
    for cell, (start, end, repeat) in zip((*cells, cells[0]), spans, strict=True):
        records.append(
            CellRecord(cell, start=start, end=end, repeat=repeat, planned=5, completed=5, succeeded=5)
        )
        CellsCsv(tmp_path).write(records)
        now[0] = end
        progress.poll()
    outcomes = [line for line in lines if "ok in" in line]
    assert outcomes[0].endswith("; 3 cells left"), outcomes  # b has not run yet
    assert outcomes[1].endswith("; ETA 1:50"), outcomes  # a again (10 s), b again (100 s)
    assert outcomes[2].endswith("; ETA 1:40"), outcomes
