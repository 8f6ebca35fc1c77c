"""Raw result files for the benchmarks' ``--out DIR``: the printed text, JSON, and the machine's load.

Each benchmark given ``--out DIR`` writes ``DIR/<name>.txt`` (everything it prints, as printed),
``DIR/<name>.json`` (its measured numbers, raw) and ``DIR/<name>-load.json`` (the 1/5/15-minute load
averages before and after it), so that every figure quoted from a run names the file it came from.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO


class _Tee:
    """A text stream that writes to the real stdout and to a file."""

    def __init__(self, stream: TextIO, copy: TextIO) -> None:
        self._stream, self._copy = stream, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._copy.flush()
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def load_averages() -> dict[str, float | str]:
    one, five, fifteen = os.getloadavg()
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "1min": one, "5min": five, "15min": fifteen}


@contextlib.contextmanager
def raw_results(out: Path | None, name: str) -> Iterator[None]:
    """Within the block, stdout is copied to ``out/name.txt``; load averages go to ``out/name-load.json``.

    Without ``out`` it does nothing, so a script behaves as before.
    """
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    load = {"argv": sys.argv, "cpu_count": os.cpu_count(), "before": load_averages()}
    with (out / f"{name}.txt").open("w") as copy:
        real = sys.stdout
        sys.stdout = _Tee(real, copy)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stdout = real
            load["after"] = load_averages()
            write_json(out / f"{name}-load.json", load)


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
