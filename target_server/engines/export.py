"""Exporting a sentence-transformers model for another runtime: ONNX (fp32, int8) and OpenVINO IR.

What is exported is the model's whole forward pass -- transformer, pooling, normalization -- as
``SentenceTransformer.forward`` computes it, from token ids, attention mask (and token types) to the
sentence embedding, so the runtime returns the vectors torch would and the server's tokenization
and batching stay the same for every engine.

The exporter is torch's own (``torch.onnx.export``), the one optimum's exporter calls: optimum's
ONNX exporter (optimum-onnx) requires transformers < 4.58, and optimum-intel < 5.6, while this
project runs transformers 5 (sentence-transformers 6 needs it), so neither can be installed beside it.
The int8 recipes are the ones optimum applies: ONNX Runtime's dynamic quantization (int8 weights per
channel, activations quantized at run time) and, for OpenVINO, NNCF's int8 weight compression.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPENVINO_FILE = "model.xml"
OPSET = 18
OUTPUT = "sentence_embedding"
# An example batch with padding (two rows of different lengths), so that the masked path is the
# one exported: a batch without padding could let the model skip its mask.
EXAMPLE_LENGTHS = (16, 9)


class SentencePipeline(torch.nn.Module):
    """Token ids and mask (and token types) to the model's sentence embedding, as ``forward`` does."""

    def __init__(self, model: torch.nn.Module, extra_features: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.extra_features = extra_features

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            features["token_type_ids"] = token_type_ids
        return self.model.forward(features | self.extra_features)[OUTPUT]


def input_names(token_type_ids: bool) -> list[str]:
    return ["input_ids", "attention_mask", *(["token_type_ids"] if token_type_ids else [])]


def example_inputs(token_type_ids: bool, pad_id: int) -> tuple[torch.Tensor, ...]:
    longest = max(EXAMPLE_LENGTHS)
    ids = torch.full((len(EXAMPLE_LENGTHS), longest), pad_id, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(EXAMPLE_LENGTHS):
        ids[row, :length] = torch.arange(1000, 1000 + length)
        mask[row, :length] = 1
    return (ids, mask, torch.zeros_like(ids)) if token_type_ids else (ids, mask)


def export_onnx(
    model: torch.nn.Module,
    extra_features: dict[str, Any],
    token_type_ids: bool,
    pad_id: int,
    path: Path,
) -> str:
    """Write ``model``'s forward pass to ``path`` (ONNX, fp32, batch and sequence dynamic); the exporter."""
    names = input_names(token_type_ids)
    _use_eager_attention(model)
    pipeline = SentencePipeline(model, extra_features).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {OUTPUT: {0: "batch"}}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            pipeline,
            example_inputs(token_type_ids, pad_id),
            str(path),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return f"torch.onnx.export (torch {torch.__version__}, TorchScript exporter, opset {OPSET})"


def _use_eager_attention(model: torch.nn.Module) -> None:
    """Trace attention as its plain matmul-softmax-matmul, not torch's SDPA: ONNX Runtime fuses that
    pattern and ran the bundled model's b=16 t=256 pass in 2.2 s against 2.9 s for the SDPA export
    (and torch's 3.0 s) on the 2-core machine. Models that cannot switch keep their own."""
    transformer = getattr(model, "transformers_model", None)  # sentence-transformers >= 5.1
    if transformer is None and hasattr(model, "__getitem__"):
        transformer = getattr(model[0], "auto_model", None)
    switch = getattr(transformer, "set_attn_implementation", None)
    if switch is None:
        return
    try:
        switch("eager")
    except (ValueError, TypeError, ImportError) as error:
        log.warning("exporting with the model's own attention (eager attention refused: %s)", error)


def quantize_onnx_int8(source: Path, target: Path) -> str:
    """ONNX Runtime's dynamic int8 quantization of ``source`` into ``target``; the recipe.

    Unsigned 8-bit weights, one scale per output channel: on the 2-core machine (AVX2, no VNNI) the
    signed-weight recipe (u8 x s8 products, which AVX2 sums with saturation) gave the bundled model a
    lowest cosine with torch of 0.985 on mixed texts, per-channel unsigned weights 0.991.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QUInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
    )
    return (
        "onnxruntime.quantization.quantize_dynamic: uint8 weights per channel, activations quantized "
        "per pass (MatMul, Gemm)"
    )


def convert_openvino(source: Path, target: Path, int8: bool) -> str:
    """Read the ONNX file ``source`` into OpenVINO and save its IR as ``target`` (fp32 weights, or
    int8 ones with NNCF's data-free weight compression); the recipe."""
    import openvino as ov

    model = ov.Core().read_model(str(source))
    recipe = f"openvino {ov.get_version()} from ONNX"
    if int8:
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        recipe += f", nncf {nncf.__version__} compress_weights INT8_ASYM (int8 weights)"
    # save_model halves weights to fp16 unless told not to: the fp32 engine must stay fp32.
    ov.save_model(model, str(target), compress_to_fp16=False)
    return recipe
