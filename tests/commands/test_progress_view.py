"""How ``embed-bench run`` shows progress: a live line with a bar on a terminal; off one, plain lines
at the interval only, without ANSI codes or carriage returns, and nothing for a short phase."""

from __future__ import annotations

import io

from embed_bench.commands.progress_view import ProgressView
from embed_bench.core.progress import FINISHED, PREPARING, RunProgress


def preparing(built: int, now: float, **fields: object) -> RunProgress:
    base: dict[str, object] = {
        "step": 2,
        "steps": 2,
        "cell": "b=128 t=8192 c=8",
        "repeat": 0,
        "phase": PREPARING,
        "run_started_at": 900.0,
        "phase_started_at": 1000.0,
        "updated_at": now,
        "payloads_built": built,
        "payloads_planned": 48,
        "left_s": None,
        "processes": 1,
        "processes_reporting": 1,
    }
    return RunProgress(**{**base, **fields})  # type: ignore[arg-type]


def test_off_a_terminal_a_plain_line_every_interval_and_none_for_a_short_phase() -> None:
    now = [1000.0]
    lines: list[str] = []
    view = ProgressView(tty=False, interval_s=10.0, clock=lambda: now[0], plain_write=lines.append)
    for second in range(0, 31):
        now[0] = 1000.0 + second
        view.update(preparing(second, now[0]))
    assert lines == [
        "cell 2/2 b=128 t=8192 c=8: preparing, payloads built 10/48 (21%), 0:10 elapsed",
        "cell 2/2 b=128 t=8192 c=8: preparing, payloads built 20/48 (42%), 0:20 elapsed",
        "cell 2/2 b=128 t=8192 c=8: preparing, payloads built 30/48 (62%), 0:30 elapsed",
    ]
    view.update(preparing(48, 1031.0, phase=FINISHED))
    assert len(lines) == 3  # nothing once the walk is over
    short: list[str] = []
    quick = ProgressView(tty=False, interval_s=10.0, clock=lambda: 1005.0, plain_write=short.append)
    quick.update(preparing(5, 1005.0))
    assert short == []


def test_on_a_terminal_a_live_line_with_a_bar_and_the_commands_lines_above_it() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream, tty=True, clock=lambda: 1030.0, width=160)
    view.update(preparing(30, 1030.0, left_s=12.0))
    view.write("[1/2] b=1 t=16 c=1: 5/5 ok in 0.4 s; 1 cell left")
    view._live.refresh()  # type: ignore[union-attr]
    view.close()
    shown = stream.getvalue()
    assert "[1/2] b=1 t=16 c=1: 5/5 ok in 0.4 s; 1 cell left" in shown
    assert "payloads built 30/48 (62%)" in shown and "0:30 elapsed, about 0:12 left" in shown
    assert "\x1b[" in shown and "━" in shown  # styled, with a bar
