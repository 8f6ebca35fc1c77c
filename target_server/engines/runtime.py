"""Running an exported model: ONNX Runtime and OpenVINO sessions behind the server's embedder.

:class:`ExportedEmbedder` keeps everything of the torch embedder that happens before and after the
forward pass -- tokenization, prompts, input limits, the warm-up batches -- and hands the padded
batch, as numpy arrays, to a runner instead of torch. Both runtimes run on the CPU and return when
the pass is done, so the embedder is synchronous (the batcher runs its passes one after another).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from target_server.embedder import SentenceTransformerEmbedder, pad_batch


class Runner(Protocol):
    """A compiled model: features (numpy, by input name) to float32 sentence embeddings."""

    input_names: list[str]
    detail: str

    def run(self, features: dict[str, np.ndarray]) -> np.ndarray: ...


class OnnxRuntimeRunner:
    """An ONNX Runtime session on the CPU, with every graph optimization (its attention and layer-norm fusions)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1  # one pass at a time: parallelism is within operators
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.detail = f"onnxruntime {ort.__version__} (CPUExecutionProvider) running {path}"

    def run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        (vectors,) = self.session.run(None, {name: features[name] for name in self.input_names})
        return np.asarray(vectors, dtype=np.float32)


class OpenVinoRunner:
    """An OpenVINO model compiled for the CPU in f32 precision (the plugin would otherwise pick bf16
    where the CPU has it), tuned for latency: one pass at a time, all threads on it."""

    def __init__(self, path: Path, threads: int | None) -> None:
        import openvino as ov

        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output = self.compiled.output(0)
        self.detail = f"openvino {ov.get_version()} (CPU, f32 precision) running {path}"

    def run(self, features: dict[str, np.ndarray]) -> np.ndarray:
        results = self.request.infer({name: features[name] for name in self.input_names})
        # The request reuses its output buffer on the next pass: the rows handed out must be a copy.
        return np.array(results[self.output], dtype=np.float32, copy=True)


class ExportedEmbedder(SentenceTransformerEmbedder):
    """The torch embedder's tokenization and limits; the forward pass in an exported runtime."""

    def __init__(
        self,
        model,
        name: str,
        runner: Runner,
        *,
        engine: str,
        quantization: str | None,
        synthetic: bool = False,
        note: str | None = None,
    ) -> None:
        super().__init__(model, name, synthetic=synthetic, note=note)
        self.runner = runner
        self.asynchronous = False
        self.info = dataclasses.replace(
            self.info,
            device="cpu",
            dtype="float32" if quantization is None else f"float32 ({quantization} weights)",
            engine=engine,
            quantization=quantization,
            engine_detail=runner.detail,
        )
        # The torch weights are not needed past this point (tokenizers are cloned): free them.
        self.model = None

    def stage(self, batch: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        return pad_batch(batch, self.pad_id, self._wants_token_type_ids)

    def launch(self, features: dict[str, np.ndarray], task: str | None = None) -> np.ndarray:
        return self.runner.run(features)

    def collect(self, flight: np.ndarray) -> np.ndarray:
        return flight
