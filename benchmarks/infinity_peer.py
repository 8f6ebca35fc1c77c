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

Where no virtual environment can be made (the GPU machine: no network, its own torch), Infinity and
its pins are installed from wheels into a folder with ``pip --target`` and run as ``python -m
infinity_emb.cli`` with that folder first on its path (:meth:`PeerLaunch.of_site`): its
transformers and sentence-transformers then shadow the machine's newer ones, for that process only,
while torch and CUDA are the machine's. That way serves the torch engine only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
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


@dataclass(frozen=True)
class PeerLaunch:
    """How Infinity's CLI is started: its venv's ``infinity_emb``, or this Python with a site folder."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    executable: Path | None = None  # the venv's infinity_emb (the ONNX exports need its optimum-cli)

    @classmethod
    def of_executable(cls, executable: Path) -> PeerLaunch:
        return cls((str(executable),), executable=executable)

    @classmethod
    def of_site(cls, site: Path) -> PeerLaunch:
        if not (site / "infinity_emb").is_dir():
            raise SystemExit(
                f"error: no infinity_emb in {site}: install Infinity's wheels there with pip --target"
            )
        path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
        return cls((sys.executable, "-m", "infinity_emb.cli"), (("PYTHONPATH", path),))


def peer_python(executable: Path) -> Path:
    """The Python of the peer's virtual environment, beside its ``infinity_emb``."""
    python = executable.parent / "python"
    if not python.exists():
        raise SystemExit(
            f"error: no python beside {executable}: give the infinity_emb of a virtual environment"
        )
    return python


def prepare_model(launch: PeerLaunch, spec: PeerSpec, source: Path, cache: Path) -> Path:
    """The model folder ``spec`` serves (built once into ``cache``, see the module's docstring)."""
    if spec.engine == "torch":
        return source
    folder = cache / spec.label
    recipe = folder / "recipe.json"
    if recipe.exists():
        return folder
    executable = launch.executable
    if executable is None:
        raise SystemExit(
            f"error: Infinity's {spec.label} needs its virtual environment (--infinity): its exporter runs there"
        )
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


# sentence-transformers 3.x (Infinity's pin) knows its modules by these names; newer releases may
# write others into modules.json.
CLASSIC_MODULES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Normalize": "sentence_transformers.models.Normalize",
}


def save_for_peer(model, folder: Path) -> None:
    """Save a SentenceTransformer (a synthetic one: random weights) as a folder both servers load.

    ``modules.json`` and the Transformer's and Pooling's configs are written as sentence-transformers
    3.x writes them (newer releases add keys its constructors refuse), so Infinity's older
    sentence-transformers loads the same modules, input limit and pooling, and the same weights, as ours."""
    work = folder.with_name(folder.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    model.save(str(work))
    modules = json.loads((work / "modules.json").read_text())
    for module in modules:
        short = module["type"].rsplit(".", 1)[-1]
        if short not in CLASSIC_MODULES:
            raise SystemExit(f"error: the peer cannot load module {module['type']!r} of {folder.name}")
        module["type"] = CLASSIC_MODULES[short]
    (work / "modules.json").write_text(json.dumps(modules, indent=2))
    transformer = {"max_seq_length": int(model.max_seq_length), "do_lower_case": False}
    (work / "sentence_bert_config.json").write_text(json.dumps(transformer, indent=2))
    pooling = model[1]
    mode = (
        pooling.get_pooling_mode_str() if hasattr(pooling, "get_pooling_mode_str") else pooling.pooling_mode
    )
    modes = (
        "cls_token",
        "mean_tokens",
        "max_tokens",
        "mean_sqrt_len_tokens",
        "weightedmean_tokens",
        "lasttoken",
    )
    names = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens", "lasttoken": "lasttoken"}
    if mode not in names:
        raise SystemExit(f"error: the peer cannot pool by {mode!r}")
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    classic = {"word_embedding_dimension": int(dimension())}
    classic |= {f"pooling_mode_{m}": m == names[mode] for m in modes} | {"include_prompt": True}
    (work / "1_Pooling" / "config.json").write_text(json.dumps(classic, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    work.rename(folder)


@contextlib.contextmanager
def running_infinity(
    launch: PeerLaunch,
    spec: PeerSpec,
    folder: Path,
    cache: Path,
    *,
    device: str = "cpu",
    dtype: str = "auto",
    timeout_s: float,
    log_path: Path | None,
) -> Iterator[str]:
    """Yield the URL of Infinity serving ``folder`` with ``spec``'s engine on ``device``; stop it on exit.

    ``dtype`` as our server's ``--dtype`` (auto: Infinity's own choice, fp16 on CUDA).
    Its Hugging Face cache (where its optimizer would write) is a folder of ``cache``, not the user's."""
    port = free_port()
    model_id = str(folder) if spec.engine == "torch" else "."
    command = [*launch.command, "v2", "--model-id", model_id, "--served-model-name", SERVED_NAME]
    command += ["--engine", spec.engine, "--device", device, "--host", "127.0.0.1", "--port", str(port)]
    command += [] if dtype == "auto" else ["--dtype", dtype]
    # Its optimum engine pools by CLS unless told otherwise ("auto" is CLS there in 0.0.78: parity
    # cosines of 0.16-0.64 showed it); the model pools by mean, as its 1_Pooling config says.
    command += ["--no-bettertransformer"] if spec.engine == "torch" else ["--pooling-method", "mean"]
    env = {
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache / f"{spec.label}.hf-cache"),
        **dict(launch.env),
    }
    with running_http_server(
        command, port, timeout_s=timeout_s, env=env, log_path=log_path, cwd=folder
    ) as url:
        yield url
