"""The embedder factory: which embedder ``--model`` stands for, loaded on the configured device.

Kept apart from the embedders themselves (TEI's ``init_backend``, Infinity's ``select_model.py``): the
null and synthetic embedders build on ``embedder``, and the factory picks among all of them, so
putting it in the base module made the three import each other.
"""

from __future__ import annotations

import logging
import os

from target_server.config import BUNDLED_MODEL, ServerConfig
from target_server.embedder import (
    BUNDLED_MODEL_ID,
    SentenceTransformerEmbedder,
    bundled_model_path,
    resolve_device,
    resolve_dtype,
)
from target_server.null_model import NullEmbedder, is_null
from target_server.synthetic import SYNTHETIC_PREFIX, build_synthetic

log = logging.getLogger(__name__)


def load_embedder(config: ServerConfig) -> SentenceTransformerEmbedder:
    """Load ``config.model`` (bundled, local path, hub id, ``synthetic:NAME`` or ``null:WIDTH``)."""
    from sentence_transformers import SentenceTransformer

    if config.cpu_threads:
        import torch

        torch.set_num_threads(config.cpu_threads)
        log.info("torch intra-op threads: %d (--cpu-threads)", config.cpu_threads)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    model_kwargs: dict[str, object] = {}
    if device == "cuda":
        model_kwargs["attn_implementation"] = "sdpa"
    if is_null(config.model):
        return NullEmbedder.from_spec(config.model)
    if config.model.startswith(SYNTHETIC_PREFIX):
        model, note = build_synthetic(config.model.removeprefix(SYNTHETIC_PREFIX), device, model_kwargs)
        return SentenceTransformerEmbedder(
            model.to(dtype).eval(),
            config.model,
            synthetic=True,
            note=note,
        )
    if config.model == BUNDLED_MODEL:
        source, name = bundled_model_path(), BUNDLED_MODEL_ID
    else:
        source = config.model
        name = os.path.basename(os.path.normpath(source)) if os.path.isdir(source) else source
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
    return SentenceTransformerEmbedder(model, name)
