"""Infinity (michaelfeil/infinity) as a peer on this machine: its model folders and its server.

The peer runs from its own virtual environment (``--infinity PATH/bin/infinity_emb``): its pins
(transformers, optimum) conflict with ours. Each engine is set up as Infinity's documentation says:

* ``torch``: the bundled model's folder, as loaded by our server (``--no-bettertransformer``: the
  BetterTransformer path needs a transformers older than the one Infinity 0.0.78 installs with).
* ``optimum``: Infinity's ONNX Runtime engine loads an ONNX file that must lie in the model folder
  (its docs: "there must be an onnx file"). The folder is the model's files plus ``model.onnx``
  exported by optimum's own exporter in the peer's environment (``optimum-cli export onnx
  --library-name transformers``, which gives the ``last_hidden_state`` output Infinity pools), with
  optimum's ``O2`` graph optimizations: the fusions Infinity applies itself at load
  (``optimization_level=99``, no fp16 on the CPU) -- done here at export because Infinity 0.0.78's own
  optimizer call fails against the optimum it now installs (``OptimizationConfig`` lost
  ``optimize_with_onnxruntime_only``), and it would then serve the unfused model.
* ``optimum:int8``: the model's files plus ``model_quantized.onnx``, optimum's dynamic int8
  quantization for AVX2 (``AutoQuantizationConfig.avx2(is_static=False)``) of the plain export, the
  file Infinity prefers on a CPU (the name holds "quantize"), as the quantized files published
  beside models are made.
* Both ONNX engines get ``--pooling-method mean``: Infinity's optimum engine takes "auto" as CLS
  pooling, and this model pools by mean.

Infinity 0.0.78 passes the ONNX file to optimum as a path, which optimum 2.x compares to bare file
names, so the ONNX engines start in their folder with ``--model-id .``. The folders are cached under
``cache``; a ``recipe.json`` in each says how it was made.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from target_server.launcher import free_port, running_http_server

SERVED_NAME = "minilm"
QUANTIZE = """
import sys
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
quantizer = ORTQuantizer.from_pretrained(sys.argv[1], file_name="model.onnx")
config = AutoQuantizationConfig.avx2(is_static=False, per_channel=False)
quantizer.quantize(save_dir=sys.argv[2], quantization_config=config)
"""


@dataclass(frozen=True)
class PeerSpec:
    """One of Infinity's engines: ``torch``, ``optimum`` or ``optimum`` with ``int8``."""

    engine: str
    quantize: str = "none"

    @property
    def label(self) -> str:
        suffix = "" if self.quantize == "none" else f"-{self.quantize}"
        return f"infinity-{self.engine}{suffix}"


def parse_peers(text: str) -> list[PeerSpec]:
    """``torch,optimum,optimum:int8``."""
    known = {"torch": ("none",), "optimum": ("none", "int8")}
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        engine, _, quantize = item.partition(":")
        if engine not in known or (quantize or "none") not in known[engine]:
            raise SystemExit(f"error: unknown Infinity engine {item!r}: use torch, optimum or optimum:int8")
        specs.append(PeerSpec(engine, quantize or "none"))
    return specs


def peer_python(executable: Path) -> Path:
    """The Python of the peer's virtual environment, beside its ``infinity_emb``."""
    python = executable.parent / "python"
    if not python.exists():
        raise SystemExit(
            f"error: no python beside {executable}: give the infinity_emb of a virtual environment"
        )
    return python


def prepare_model(executable: Path, spec: PeerSpec, source: Path, cache: Path) -> Path:
    """The model folder ``spec`` serves (built once into ``cache``, see the module's docstring)."""
    if spec.engine == "torch":
        return source
    folder = cache / spec.label
    recipe = folder / "recipe.json"
    if recipe.exists():
        return folder
    python = peer_python(executable)
    cli = executable.parent / "optimum-cli"
    shutil.rmtree(folder, ignore_errors=True)
    work = cache / f"{spec.label}.work"
    shutil.rmtree(work, ignore_errors=True)
    export = [str(cli), "export", "onnx", "--model", str(source), "--task", "feature-extraction"]
    export += ["--library-name", "transformers"]
    if spec.quantize == "none":
        command = [*export, "--optimize", "O2", str(work)]
        subprocess.run(command, check=True, capture_output=True)
        made = {"file": "model.onnx", "from": work / "model.onnx", "how": " ".join(command)}
    else:
        subprocess.run([*export, str(work / "plain")], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-c", QUANTIZE, str(work / "plain"), str(work)], check=True, capture_output=True
        )
        how = "optimum ORTQuantizer, AutoQuantizationConfig.avx2(is_static=False, per_channel=False)"
        made = {"file": "model_quantized.onnx", "from": work / "model_quantized.onnx", "how": how}
    shutil.copytree(source, folder)
    shutil.copy(made["from"], folder / made["file"])
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('optimum'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    recipe.write_text(json.dumps({"file": made["file"], "how": made["how"], "optimum": version}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return folder


@contextlib.contextmanager
def running_infinity(
    executable: Path, spec: PeerSpec, folder: Path, cache: Path, *, timeout_s: float, log_path: Path | None
) -> Iterator[str]:
    """Yield the URL of Infinity serving ``folder`` with ``spec``'s engine on the CPU; stop it on exit.

    Its Hugging Face cache (where its optimizer would write) is a folder of ``cache``, not the user's."""
    port = free_port()
    model_id = str(folder) if spec.engine == "torch" else "."
    command = [str(executable), "v2", "--model-id", model_id, "--served-model-name", SERVED_NAME]
    command += ["--engine", spec.engine, "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    # Its optimum engine pools by CLS unless told otherwise ("auto" is CLS there in 0.0.78: parity
    # cosines of 0.16-0.64 showed it); the model pools by mean, as its 1_Pooling config says.
    command += ["--no-bettertransformer"] if spec.engine == "torch" else ["--pooling-method", "mean"]
    env = {
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache / f"{spec.label}.hf-cache"),
    }
    with running_http_server(
        command, port, timeout_s=timeout_s, env=env, log_path=log_path, cwd=folder
    ) as url:
        yield url
