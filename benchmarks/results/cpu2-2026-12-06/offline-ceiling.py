"""The runtimes alone, no server: tokens/s of one b=32 t=128 pass after another on 2 threads, for the
torch model and each ONNX file the engines run served (ours from the server's export cache, the
peer's from benchmarks/engines.py --peer-cache). Run after engines.py, under flock /tmp/cpu.lock:

    .venv/bin/python benchmarks/results/cpu2-2026-12-06/offline-ceiling.py /tmp/ec /tmp/embed-bench-peer-models
"""

import glob
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
from sentence_transformers import SentenceTransformer

from target_server.embedder import bundled_model_path

ours, peers = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
ROWS, T, SECONDS = 32, 128, 8
ids = np.concatenate(
    [np.full((ROWS, 1), 101), rng.integers(1000, 20000, (ROWS, T - 2)), np.full((ROWS, 1), 102)], 1
).astype(np.int64)
features = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def timed(run, label: str) -> None:
    for _ in range(2):
        run()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        run()
        n += 1
    print(f"| {label} | {n * ROWS * T / (time.perf_counter() - started):,.0f} |", flush=True)


print(f"b={ROWS} t={T}, {SECONDS} s each, 2 threads\n\n| runtime | tokens/s |\n|---|---:|")
torch.set_num_threads(2)
model = SentenceTransformer(bundled_model_path(), device="cpu")
batch = {k: torch.from_numpy(v) for k, v in features.items()}
with torch.inference_mode():
    timed(lambda: model(batch), "torch fp32 (SentenceTransformer forward)")
for label, pattern in [
    ("ours: onnx fp32", f"{ours}/*-onnx-none-*/model.onnx"),
    ("ours: onnx int8", f"{ours}/*-onnx-int8-*/model.onnx"),
    ("peer: optimum fp32 (O2)", f"{peers}/infinity-optimum/model.onnx"),
    ("peer: optimum int8 (avx2)", f"{peers}/infinity-optimum-int8/model_quantized.onnx"),
]:
    (path,) = glob.glob(pattern)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inputs = {i.name: features[i.name] for i in session.get_inputs()}
    timed(lambda session=session, inputs=inputs: session.run(None, inputs), label)

import openvino as ov  # noqa: E402

for label, pattern in [
    ("ours: openvino fp32", f"{ours}/*-openvino-none-*/*.xml"),
    ("ours: openvino int8 weights", f"{ours}/*-openvino-int8-*/*.xml"),
]:
    (path,) = glob.glob(pattern)
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2}
    request = ov.Core().compile_model(path, "CPU", config).create_infer_request()
    names = [port.get_any_name() for port in request.model_inputs]
    inputs = {name: features[name] for name in names}
    timed(lambda request=request, inputs=inputs: request.infer(inputs), label)
