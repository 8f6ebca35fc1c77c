"""How ``embed-bench run`` shows a run's progress (``embed_bench.core.progress.RunProgress``).

On a terminal: a live line under the printed lines (rich), redrawn twice a second -- the cell of how
many, its phase, a bar of payloads built (while preparing) or requests done (while running) of those
planned, the time in the phase and, where one can be made, an estimate of the time left. Lines the
command prints go above it, so the cell outcomes stay in the terminal's scrollback.

Anywhere else (CI, a pipe, a log file): no live line, no ANSI codes, no carriage returns; a plain
line every ``PLAIN_INTERVAL_S`` while a phase lasts longer than that, so a short cell adds nothing
and a 411 s preparation says how far it got every 10 s.

Why rich: it draws the live line and the bar on any terminal (width, colour support and Windows
consoles included), writes plain text when the output is not one, and is maintained and widely used
(it is already in the environment through the test and docs tools).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from embed_bench.core.progress import FINISHED, RunProgress, progress_line

PLAIN_INTERVAL_S = 10.0
REFRESH_PER_S = 2


class ProgressView:
    """Receives the command's lines (``write``) and the latest progress (``update``); ``close`` ends
    the live line. ``tty`` None: decided by the stream (``isatty``)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float = PLAIN_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        plain_write: Callable[[str], None] | None = None,
        width: int | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.interval_s = interval_s
        self.clock = clock
        self._plain_write = plain_write
        self._progress: RunProgress | None = None
        self._printed_at = 0.0
        self._live = None
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self.console = Console(file=self.stream, force_terminal=True, highlight=False, width=width)
            self._live = Live(
                get_renderable=self._renderable,
                console=self.console,
                refresh_per_second=REFRESH_PER_S,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def write(self, line: str) -> None:
        """A line of the command's output: above the live line on a terminal, else as it is."""
        if self._live is not None:
            self.console.print(line, markup=False, emoji=False, highlight=False, soft_wrap=True)
        elif self._plain_write is not None:
            self._plain_write(line)
        else:
            print(line, file=self.stream, flush=True)

    def update(self, progress: RunProgress | None) -> None:
        """The latest progress (None: none yet). Off a terminal, a plain line when it is due."""
        if progress is None:
            return
        self._progress = progress
        if self._live is not None or progress.phase == FINISHED:
            return
        now = self.clock()
        if progress.elapsed_s(now) >= self.interval_s and now - self._printed_at >= self.interval_s:
            self._printed_at = now
            self.write(progress_line(progress, now).plain)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _renderable(self):  # -> rich RenderableType, imported lazily with rich
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        progress = self._progress
        if progress is None or progress.phase == FINISHED:
            return Text("")
        line = progress_line(progress, self.clock())
        grid = Table.grid(padding=(0, 1))
        for _ in range(5):  # a narrow terminal cuts the line short rather than wrap it (one line redrawn)
            grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_row(
            Text(line.where, style="bold"),
            Text(line.phase, style="cyan"),
            ProgressBar(total=line.planned, completed=line.done, width=24),
            Text(line.work),
            Text(f"{line.elapsed} elapsed" + (f", {line.left}" if line.left else ""), style="dim"),
        )
        return grid
