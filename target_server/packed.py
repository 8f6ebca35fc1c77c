"""``--attention packed``: the forward pass without padding, for BERT and XLM-RoBERTa encoders.

A padded batch of passages of unlike lengths runs every layer on ``rows x longest`` tokens; the
padding is computed and thrown away. Here the batch's tokens are packed end to end into one
``(tokens, hidden)`` matrix instead, as text-embeddings-inference's flash BERT does it:

- the embeddings, the QKV projection (one fused matmul), the attention's output, the feed-forward and
  the layer norms work on real tokens only, whatever their lengths;
- attention, the one step where tokens meet, sees each passage on its own: the packed Q, K and V are
  viewed as a jagged nested tensor (``nested_tensor_from_jagged``, no copy) and handed to
  ``scaled_dot_product_attention``, which runs variable-length kernels on CUDA (flash or memory
  efficient) and per-passage ones on the CPU;
- pooling (mean or CLS) and the optional ``Normalize`` run per passage on the packed rows.

The layers are the model's own modules (``Linear``, ``LayerNorm``, activation), called on 2-D input;
only Q, K and V are fused, into one weight made at load (a quarter of a layer's parameters more
memory). A model of another architecture, or with modules after pooling other than ``Normalize``,
is refused with the reason, and the server says so at start (:func:`packing_refusal`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from target_server.embedder import SentenceTransformerEmbedder

log = logging.getLogger(__name__)

# transformers' model_type of the encoders whose layers this module knows, and the offset of their
# position ids (XLM-RoBERTa counts positions from padding_idx + 1, as fairseq did).
ARCHITECTURES = ("bert", "xlm-roberta")
# transformers' own classes for them: a model's own code (trust_remote_code) may call itself "bert"
# and attend differently (ALiBi, rotary), so only these are packed.
MODEL_CLASSES = {
    "bert": "transformers.models.bert.modeling_bert.BertModel",
    "xlm-roberta": "transformers.models.xlm_roberta.modeling_xlm_roberta.XLMRobertaModel",
}
POOLING_MODES = ("mean", "cls")
# How packed attention runs: one nested-tensor SDPA call over the batch (varlen flash or memory-efficient
# kernels on CUDA; torch's CPU path for it is a slow math fallback, 7-17x the time measured), or one
# dense SDPA call per run of passages of one length (the CPU's flash kernel; the default there).
KERNELS = ("nested", "runs")


@dataclass(frozen=True)
class PackedBatch:
    """A batch's tokens end to end, with where each passage starts (``offsets``, rows + 1 entries)."""

    input_ids: torch.Tensor  # (tokens,) int64
    positions: torch.Tensor  # (tokens,) int64: each token's position within its passage
    offsets: torch.Tensor  # (rows + 1,) int64
    lengths: torch.Tensor  # (rows,) int64
    longest: int
    # Consecutive passages of one length, as (first token, passages, length), on the host: a run is
    # one dense attention call. Sorted batches (continuous) and fixed-length traffic make long runs.
    runs: tuple[tuple[int, int, int], ...]

    @classmethod
    def of(cls, batch: Sequence[Sequence[int]]) -> PackedBatch:
        lengths = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch))
        offsets = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        input_ids = np.fromiter((i for ids in batch for i in ids), dtype=np.int64, count=int(offsets[-1]))
        positions = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        return cls(
            torch.from_numpy(input_ids),
            torch.from_numpy(positions),
            torch.from_numpy(offsets),
            torch.from_numpy(lengths),
            int(lengths.max()),
            _runs(lengths.tolist()),
        )

    def to(self, device: str, non_blocking: bool = False) -> PackedBatch:
        def move(tensor: torch.Tensor) -> torch.Tensor:
            if non_blocking:
                tensor = tensor.pin_memory()
            return tensor.to(device, non_blocking=non_blocking)

        return PackedBatch(
            move(self.input_ids),
            move(self.positions),
            move(self.offsets),
            move(self.lengths),
            self.longest,
            self.runs,
        )


def packing_refusal(model) -> str | None:
    """Why ``model`` (a SentenceTransformer) cannot run packed, or None when it can."""
    modules = list(model)
    if not modules or type(modules[0]).__name__ != "Transformer":
        return "its first module is not a sentence-transformers Transformer"
    auto_model = getattr(modules[0], "auto_model", None)
    model_type = getattr(getattr(auto_model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        return f"its architecture is {model_type!r}; packed attention knows {', '.join(ARCHITECTURES)}"
    cls = type(auto_model)
    if f"{cls.__module__}.{cls.__qualname__}" != MODEL_CLASSES[model_type]:
        return f"its model class is {cls.__module__}.{cls.__qualname__}, not transformers' {MODEL_CLASSES[model_type]}"
    if getattr(auto_model.config, "is_decoder", False):
        return "it is configured as a decoder"
    if len(modules) < 2 or type(modules[1]).__name__ != "Pooling":
        return "its second module is not Pooling"
    mode = _pooling_mode(modules[1])
    if mode not in POOLING_MODES:
        return f"its pooling is {mode!r}; packed attention pools by {' or '.join(POOLING_MODES)}"
    rest = [type(m).__name__ for m in modules[2:]]
    if rest not in ([], ["Normalize"]):
        return f"it has modules after pooling ({', '.join(rest)}); packed attention allows only Normalize"
    return None


class PackedEncoder(torch.nn.Module):
    """The model's encoder, embeddings and pooling, run on a :class:`PackedBatch`."""

    def __init__(self, model, kernel: str | None = None) -> None:
        super().__init__()
        reason = packing_refusal(model)
        if reason is not None:
            raise ValueError(f"this model cannot run with --attention packed: {reason}")
        modules = list(model)
        auto_model = modules[0].auto_model
        config = auto_model.config
        self.embeddings = auto_model.embeddings
        self.layers = auto_model.encoder.layer
        self.heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        padding_idx = getattr(self.embeddings, "padding_idx", None)
        self.position_offset = padding_idx + 1 if config.model_type == "xlm-roberta" else 0
        self.pooling = _pooling_mode(modules[1])
        self.normalize = len(modules) > 2
        # One (hidden -> 3 x hidden) matmul instead of three: fewer, larger kernels.
        self.qkv = [
            (
                torch.cat(
                    [
                        layer.attention.self.query.weight,
                        layer.attention.self.key.weight,
                        layer.attention.self.value.weight,
                    ]
                ),
                torch.cat(
                    [
                        layer.attention.self.query.bias,
                        layer.attention.self.key.bias,
                        layer.attention.self.value.bias,
                    ]
                ),
            )
            for layer in self.layers
        ]
        if kernel is not None and kernel not in KERNELS:
            raise ValueError(f"unknown packed attention kernel {kernel!r}; known: {', '.join(KERNELS)}")
        self.kernel = kernel or self._default_kernel(str(self.qkv[0][0].device), self.qkv[0][0].dtype)

    def _default_kernel(self, device: str, dtype: torch.dtype) -> str:
        """nested on CUDA where a nested kernel takes the head size and dtype, else runs."""
        return "nested" if device.startswith("cuda") and self._nested_runs(device, dtype) else "runs"

    def embed(self, batch: PackedBatch) -> torch.Tensor:
        """Word, position and token-type (type 0) embeddings, normalized: ``(tokens, hidden)``."""
        e = self.embeddings
        hidden = e.word_embeddings(batch.input_ids) + e.position_embeddings(
            batch.positions + self.position_offset
        )
        hidden = hidden + e.token_type_embeddings.weight[0]
        return e.LayerNorm(hidden)

    def attend(self, qkv: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        """Each passage's tokens attend to that passage only: ``(tokens, 3 x hidden)`` to ``(tokens, hidden)``."""
        tokens = qkv.shape[0]
        if self.kernel == "nested":
            return self._attend_nested(qkv, batch)
        out = torch.empty(tokens, self.heads, self.head_size, dtype=qkv.dtype, device=qkv.device)
        for start, count, length in batch.runs:
            end = start + count * length
            # (3, passages, heads, length, head_size): passages of one length, through the dense kernel.
            q, k, v = qkv[start:end].view(count, length, 3, self.heads, self.head_size).permute(2, 0, 3, 1, 4)
            out[start:end] = (
                F.scaled_dot_product_attention(q, k, v)
                .transpose(1, 2)
                .reshape(end - start, self.heads, self.head_size)
            )
        return out.view(tokens, self.heads * self.head_size)

    def _nested_runs(self, device: str, dtype: torch.dtype) -> bool:
        """Whether a nested SDPA kernel takes this head size and dtype here (a two-passage probe)."""
        probe = PackedBatch.of([[0, 0, 0], [0]]).to(device)
        qkv = torch.zeros(4, 3 * self.heads * self.head_size, dtype=dtype, device=device)
        try:
            with torch.inference_mode():
                self._attend_nested(qkv, probe)
        except RuntimeError as error:
            log.warning(
                "nested attention has no kernel here (%s); packed attention runs per length run", error
            )
            return False
        return True

    def _attend_nested(self, qkv: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        tokens = qkv.shape[0]
        # (3, tokens, heads, head_size), contiguous: the nested kernels want each of Q, K, V dense.
        q, k, v = qkv.view(tokens, 3, self.heads, self.head_size).transpose(0, 1).contiguous().unbind(0)
        out = F.scaled_dot_product_attention(
            self._jagged(q, batch), self._jagged(k, batch), self._jagged(v, batch)
        )
        return out.transpose(1, 2).values().reshape(tokens, self.heads * self.head_size)

    @staticmethod
    def _jagged(values: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        nested = torch.nested.nested_tensor_from_jagged(
            values, batch.offsets, min_seqlen=1, max_seqlen=batch.longest
        )
        return nested.transpose(1, 2)  # (rows, heads, j, head_size)

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        hidden = self.embed(batch)
        for layer, (weight, bias) in zip(self.layers, self.qkv, strict=True):
            attended = self.attend(F.linear(hidden, weight, bias), batch)
            hidden = layer.attention.output(attended, hidden)
            hidden = layer.output(layer.intermediate(hidden), hidden)
        return self.pool(hidden, batch)

    def pool(self, hidden: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        """Mean (in float32) or first token per passage, then L2-normalized if the model normalizes."""
        if self.pooling == "cls":
            pooled = hidden[batch.offsets[:-1]]
        else:
            rows = torch.repeat_interleave(
                torch.arange(len(batch.lengths), device=hidden.device),
                batch.lengths,
                output_size=hidden.shape[0],
            )
            sums = torch.zeros(len(batch.lengths), hidden.shape[1], dtype=torch.float32, device=hidden.device)
            sums.index_add_(0, rows, hidden.float())
            pooled = sums / batch.lengths[:, None].to(torch.float32)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


def _runs(lengths: list[int]) -> tuple[tuple[int, int, int], ...]:
    """``(first token, passages, length)`` for each stretch of consecutive passages of one length."""
    runs: list[tuple[int, int, int]] = []
    start = 0
    for length in lengths:
        if runs and runs[-1][2] == length:
            first, count, _ = runs[-1]
            runs[-1] = (first, count + 1, length)
        else:
            runs.append((start, 1, length))
        start += length
    return tuple(runs)


def _pooling_mode(pooling) -> str:
    mode = getattr(pooling, "pooling_mode", None)
    if isinstance(mode, str):
        return mode
    get = getattr(pooling, "get_pooling_mode_str", None)
    return get() if get else "unknown"


class PackedEmbedder(SentenceTransformerEmbedder):
    """The torch embedder whose passes run packed (:class:`PackedEncoder`): tokenization, prompts,
    the CUDA stage/launch/collect overlap and out-of-memory splits are the parent's."""

    pads = False

    def __init__(self, model, name: str, *, kernel: str | None = None, **kwargs) -> None:
        super().__init__(model, name, **kwargs)
        if self.info.tasks:
            raise ValueError("this model cannot run with --attention packed: it has task adapters")
        self.encoder = PackedEncoder(model, kernel)
        self.info = dataclasses.replace(self.info, attention=f"packed ({self.encoder.kernel})")

    def stage(self, batch: Sequence[Sequence[int]]) -> PackedBatch:
        packed = PackedBatch.of(batch)
        return packed.to(self.device, non_blocking=True) if self.asynchronous else packed

    def _forward(self, features: PackedBatch, task: str | None) -> torch.Tensor:
        return self.encoder(features)
