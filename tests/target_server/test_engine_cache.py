"""The export cache (target_server.engines.cache): keys that change with the model's files, the
engine and the quantization; folders that appear whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from target_server.engines.cache import MANIFEST, build_once, cache_entry, model_fingerprint


def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "weights.bin").write_bytes(b"\0" * 64)
    return folder


def test_key_follows_the_model_files_engine_and_quantization(tmp_path) -> None:
    folder = model_dir(tmp_path)
    root = tmp_path / "cache"
    first = cache_entry(root, "my-model", "onnx", "none", model_fingerprint(str(folder)))
    assert first.folder.parent == root and first.folder.name.startswith("my-model-onnx-none-")
    assert cache_entry(root, "my-model", "onnx", "none", model_fingerprint(str(folder))) == first
    assert (
        cache_entry(root, "my-model", "onnx", "int8", model_fingerprint(str(folder))).folder != first.folder
    )
    assert (
        cache_entry(root, "my-model", "openvino", "none", model_fingerprint(str(folder))).folder
        != first.folder
    )
    stat = (folder / "weights.bin").stat()
    os.utime(folder / "weights.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # changed in place
    assert (
        cache_entry(root, "my-model", "onnx", "none", model_fingerprint(str(folder))).folder != first.folder
    )
    synthetic = model_fingerprint("synthetic:bge-small")
    assert synthetic == {"source": "synthetic:bge-small"}
    assert cache_entry(root, "synthetic:bge-small", "onnx", "none", synthetic).folder.name.startswith(
        "synthetic-bge-small-onnx-none-"
    )


def test_an_entry_is_built_once_and_then_reused(tmp_path) -> None:
    entry = cache_entry(tmp_path, "m", "onnx", "none", {"source": "m"})
    calls: list[Path] = []

    def build(folder: Path) -> dict:
        calls.append(folder)
        (folder / "model.onnx").write_bytes(b"onnx")
        return {"tool": "test"}

    folder, built = build_once(entry, build)
    assert built and folder == entry.folder and (folder / "model.onnx").read_bytes() == b"onnx"
    assert calls[0] != entry.folder  # built aside, then renamed into place
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["tool"] == "test" and manifest["key"] == entry.key
    assert build_once(entry, build) == (entry.folder, False) and len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [entry.folder.name]


def test_a_failed_build_leaves_nothing_behind(tmp_path) -> None:
    entry = cache_entry(tmp_path, "m", "onnx", "int8", {"source": "m"})

    def build(folder: Path) -> dict:
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        build_once(entry, build)
    assert list(tmp_path.iterdir()) == []
    assert not entry.complete


def test_an_incomplete_folder_is_rebuilt(tmp_path) -> None:
    entry = cache_entry(tmp_path, "m", "onnx", "none", {"source": "m"})
    entry.folder.mkdir(parents=True)
    (entry.folder / "model.onnx").write_bytes(b"truncated")  # a build killed before its manifest
    folder, built = build_once(entry, lambda f: (f / "model.onnx").write_bytes(b"whole") and {})
    assert built and (folder / "model.onnx").read_bytes() == b"whole" and entry.complete
