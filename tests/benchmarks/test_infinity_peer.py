"""The GPU peer's plumbing in ``benchmarks/infinity_peer.py`` and ``benchmarks/engines.py``: a synthetic
model saved in sentence-transformers 3.x's format loads back with the same vectors, Infinity from a
``pip --target`` folder runs with that folder first on its path only, and engine specs name the
attention. (Infinity itself is not installed in CI; the CPU smoke of ``gpu_session.sh`` runs it.)"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from target_server.synthetic import build_shape
from tests.benchmarks.scripts import load_script
from tests.target_server.test_packed import SMALL_XLM_R

engines = load_script("engines")
infinity_peer = load_script("infinity_peer")


def test_a_saved_synthetic_model_loads_back_with_the_same_vectors_in_the_classic_format(
    tmp_path: Path,
) -> None:
    from sentence_transformers import SentenceTransformer

    model, _ = build_shape(SMALL_XLM_R, "cpu", {})
    folder = tmp_path / "synthetic-small"
    infinity_peer.save_for_peer(model.eval(), folder)
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"] for m in modules] == [
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
        "sentence_transformers.models.Normalize",
    ]
    # What sentence-transformers 3.x's constructors take, and nothing they refuse.
    assert json.loads((folder / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 512,
        "do_lower_case": False,
    }
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 64 and pooling["pooling_mode_mean_tokens"] is True
    assert [key for key, on in pooling.items() if key.startswith("pooling_mode_") and on] == [
        "pooling_mode_mean_tokens"
    ]
    assert not folder.with_name(folder.name + ".work").exists()
    texts = ["a short one", "a somewhat longer passage to embed, with more tokens in it"]
    reloaded = SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(reloaded.encode(texts), model.encode(texts), atol=1e-6)


def test_infinity_from_a_site_folder_has_that_folder_first_on_its_path_only(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no infinity_emb in"):
        infinity_peer.PeerLaunch.of_site(tmp_path)
    (tmp_path / "infinity_emb").mkdir()
    launch = infinity_peer.PeerLaunch.of_site(tmp_path)
    assert launch.command == (sys.executable, "-m", "infinity_emb.cli")
    path = dict(launch.env)["PYTHONPATH"].split(os.pathsep)
    assert path[0] == str(tmp_path)
    # Its ONNX engines need the venv's exporter: refused with the reason, before any timing.
    with pytest.raises(SystemExit, match="needs its virtual environment"):
        infinity_peer.prepare_model(launch, infinity_peer.PeerSpec("optimum"), tmp_path, tmp_path / "cache")
    assert (
        infinity_peer.prepare_model(launch, infinity_peer.PeerSpec("torch"), tmp_path, tmp_path) == tmp_path
    )


def test_engine_specs_name_their_attention() -> None:
    specs = engines.parse_engines("torch,torch+packed,onnx:int8")
    assert [s.label for s in specs] == ["torch", "torch-packed", "onnx-int8"]
    assert specs[1].server_args == ["--engine", "torch", "--quantize", "none", "--attention", "packed"]
    with pytest.raises(SystemExit, match="must start with torch"):
        engines.parse_engines("torch+packed,torch")
