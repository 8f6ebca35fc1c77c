"""Where exported models are kept between starts: one folder per model, engine and quantization.

Exporting a model to ONNX or OpenVINO takes seconds to minutes; a server restarted for every load
test must not pay it each time. A folder's name carries a digest of everything its files depend on
-- the model's files (path, sizes and modification times, so a model changed in place is exported
again), the engine, the quantization and the exporter's version -- so a stale export is never
loaded, and two servers that share the cache never mix their files: a folder is built under a
temporary name and renamed into place once complete, and ``export.json`` (written last) says what
it holds and how it was made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Bump when what is exported changes (the wrapper, the quantization recipe): old folders are ignored.
FORMAT = 1
MANIFEST = "export.json"


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/embed-bench/engines``, or ``~/.cache/embed-bench/engines``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "embed-bench" / "engines"


def model_fingerprint(source: str) -> dict[str, Any]:
    """What identifies a model's files: for a local folder its real path and every file's relative
    path, size and modification time (weights are not hashed: a 2 GB model would take seconds);
    for anything else (``synthetic:NAME``, a hub id) the name itself."""
    path = Path(source)
    if not path.is_dir():
        return {"source": source}
    files = []
    for file in sorted(path.rglob("*")):
        if file.is_file():
            stat = file.stat()
            files.append([str(file.relative_to(path)), stat.st_size, stat.st_mtime_ns])
    return {"source": str(path.resolve()), "files": files}


@dataclass(frozen=True)
class CacheEntry:
    """One export: its folder (complete once it holds ``export.json``) and what it was made from."""

    folder: Path
    key: dict[str, Any]

    @property
    def complete(self) -> bool:
        return (self.folder / MANIFEST).is_file()

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.folder / MANIFEST).read_text())


def cache_entry(root: Path, name: str, engine: str, quantization: str, key: dict[str, Any]) -> CacheEntry:
    """The folder for ``name`` (shown in its name) exported to ``engine`` with ``quantization``."""
    material = {"format": FORMAT, "engine": engine, "quantization": quantization} | key
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "model"
    return CacheEntry(root / f"{slug}-{engine}-{quantization}-{digest}", material)


def build_once(entry: CacheEntry, build: Callable[[Path], dict[str, Any]]) -> tuple[Path, bool]:
    """The entry's folder, built by ``build(folder)`` unless complete already; (folder, built now).

    ``build`` writes its files into a fresh temporary folder next to the entry and returns what to
    record in ``export.json``; the folder is then renamed into place. If another process completed
    the same entry meanwhile, its folder is kept and this one discarded.
    """
    if entry.complete:
        return entry.folder, False
    entry.folder.parent.mkdir(parents=True, exist_ok=True)
    building = entry.folder.with_name(f"{entry.folder.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    try:
        started = time.perf_counter()
        details = build(building)
        manifest = {
            "key": entry.key,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - started, 2),
        } | details
        (building / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if entry.complete:  # built by another process meanwhile: theirs stands
            return entry.folder, False
        if entry.folder.exists():  # an incomplete folder (a build killed before its rename)
            shutil.rmtree(entry.folder, ignore_errors=True)
        try:
            building.rename(entry.folder)
        except OSError:
            if not entry.complete:
                raise
            return entry.folder, False
        return entry.folder, True
    finally:
        with contextlib.suppress(OSError):
            if building.exists():
                shutil.rmtree(building)
