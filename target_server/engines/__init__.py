"""``--engine torch|onnx|openvino`` and ``--quantize int8``: what runs the forward pass on a CPU.

Published CPU figures put ONNX Runtime and int8 engines 2-2.5x above torch for small embedding
models (Infinity's, for bge-small); a team self-hosting on CPUs would use one. The model is loaded
with torch as always (its tokenizer, prompts and limits come from there), then:

* ``onnx``: the forward pass exported to ONNX (:mod:`.export`) and run by ONNX Runtime, ``int8``
  with its dynamic quantization;
* ``openvino``: that ONNX file read into OpenVINO, ``int8`` with NNCF's int8 weight compression.

torch's own dynamic int8 (``torch.ao``, deprecated) is not offered: on the bundled model its vectors
kept a cosine of only 0.76 with fp32 (benchmarks/results/cpu2-2026-12-05/engines/engines.json).

Exports are kept in a cache folder per model, engine and quantization (:mod:`.cache`), so only the
first start pays for them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from target_server.config import ServerConfig
from target_server.embedder import SentenceTransformerEmbedder
from target_server.engines.cache import build_once, cache_entry, default_cache_root

log = logging.getLogger(__name__)


class EngineUnavailable(RuntimeError):
    """The engine cannot serve this model here; the message says why and what to do instead."""


def engine_embedder(
    model,
    name: str,
    config: ServerConfig,
    *,
    key: dict[str, Any],
    synthetic: bool = False,
    note: str | None = None,
) -> SentenceTransformerEmbedder:
    """``model`` (a SentenceTransformer on the CPU, float32) served by ``config.engine``.

    ``key`` identifies the model's files for the export cache (:func:`.cache.model_fingerprint`).
    """
    quantization = None if config.quantize == "none" else config.quantize
    embedder = SentenceTransformerEmbedder(model, name, synthetic=synthetic, note=note)
    if embedder.info.tasks:
        raise EngineUnavailable(
            f"--engine {config.engine} --quantize {config.quantize}: {name} is a multi-task model (task "
            "adapters chosen per pass), which only --engine torch without --quantize serves"
        )
    if config.engine == "torch":  # ServerConfig.validate refuses torch with --quantize
        raise EngineUnavailable(
            "--engine torch serves the model as loaded; --quantize needs onnx or openvino"
        )
    root = Path(config.engine_cache) if config.engine_cache else default_cache_root()
    onnx_file = _onnx_export(embedder, name, root, key, "none")
    if config.engine == "onnx":
        if quantization:
            onnx_file = _onnx_export(embedder, name, root, key, quantization, fp32=onnx_file)
        from target_server.engines.runtime import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(onnx_file, config.cpu_threads)
    else:
        from target_server.engines.runtime import OpenVinoRunner

        runner = OpenVinoRunner(
            _openvino_export(name, root, key, config.quantize, onnx_file), config.cpu_threads
        )
    from target_server.engines.runtime import ExportedEmbedder

    log.info("engine: %s", runner.detail)
    return ExportedEmbedder(
        model, name, runner, engine=config.engine, quantization=quantization, synthetic=synthetic, note=note
    )


def _onnx_export(
    embedder: SentenceTransformerEmbedder,
    name: str,
    root: Path,
    key: dict[str, Any],
    quantization: str,
    fp32: Path | None = None,
) -> Path:
    """The cached ONNX file of ``embedder``'s model (fp32, or int8 made from the ``fp32`` file)."""
    from target_server.engines import export

    def build(folder: Path) -> dict[str, Any]:
        target = folder / export.ONNX_FILE
        if quantization == "none":
            tool = export.export_onnx(
                embedder.model,
                embedder._extra_features,
                embedder._wants_token_type_ids,
                embedder.pad_id,
                target,
            )
        else:
            tool = export.quantize_onnx_int8(fp32, target)
        return {"model": name, "engine": "onnx", "quantization": quantization, "tool": tool}

    return _cached(cache_entry(root, name, "onnx", quantization, key), build) / export.ONNX_FILE


def _openvino_export(name: str, root: Path, key: dict[str, Any], quantization: str, onnx_file: Path) -> Path:
    """The cached OpenVINO IR made from the fp32 ONNX file (int8 weights with ``quantization``)."""
    import openvino as ov

    from target_server.engines import export

    def build(folder: Path) -> dict[str, Any]:
        tool = export.convert_openvino(onnx_file, folder / export.OPENVINO_FILE, quantization == "int8")
        return {"model": name, "engine": "openvino", "quantization": quantization, "tool": tool}

    entry = cache_entry(root, name, "openvino", quantization, key | {"openvino": ov.get_version()})
    return _cached(entry, build) / export.OPENVINO_FILE


def _cached(entry, build) -> Path:
    started = time.perf_counter()
    folder, built = build_once(entry, build)
    if built:
        log.info("exported to %s in %.1f s", folder, time.perf_counter() - started)
    else:
        log.info("using the cached export %s", folder)
    return folder
