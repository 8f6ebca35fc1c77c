"""``benchmarks/gpu_bundle.py``: the GPU session's tokenizer carrier keeps the bundled tokenizer byte
for byte, weighs a few MB, serves synthetic and null models as the real package does, and is refused
as ``--model bundled`` (its stand-in model's vectors mean nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from target_server import models
from target_server.config import ServerConfig
from target_server.embedder import bundled_model_path, is_tokenizer_carrier
from tests.benchmarks.scripts import load_script

gpu_bundle = load_script("gpu_bundle")


@pytest.fixture(scope="module")
def carrier(tmp_path_factory) -> Path:
    return gpu_bundle.build_carrier(tmp_path_factory.mktemp("site")) / "model"


def test_the_carrier_keeps_the_tokenizer_and_drops_the_weights(carrier: Path) -> None:
    real = Path(bundled_model_path())
    for name in gpu_bundle.TOKENIZER_FILES:
        assert (carrier / name).read_bytes() == (real / name).read_bytes(), name
    assert gpu_bundle.folder_bytes(carrier.parent) < 5 * 2**20  # the real package: about 90 MB
    assert is_tokenizer_carrier(str(carrier)) and not is_tokenizer_carrier(str(real))


def test_synthetic_and_null_models_serve_from_the_carrier_as_from_the_package(
    carrier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["a passage to embed", "and a much longer one, with a few more words in it than the first"]
    expected = {}
    for spec in ("synthetic:bge-small", "null:16"):
        embedder = models.load_embedder(ServerConfig(model=spec, device="cpu"))
        expected[spec] = (embedder.tokenize(texts), embedder.embed(embedder.tokenize(texts)))
    # As on the GPU machine: the carrier stands where the package's model was.
    monkeypatch.setattr(models, "bundled_model_path", lambda: str(carrier))
    monkeypatch.setattr("target_server.synthetic.bundled_model_path", lambda: str(carrier))
    monkeypatch.setattr("target_server.null_model.bundled_model_path", lambda: str(carrier))
    for spec, (ids, vectors) in expected.items():
        embedder = models.load_embedder(ServerConfig(model=spec, device="cpu"))
        assert embedder.tokenize(texts) == ids
        np.testing.assert_allclose(embedder.embed(ids), vectors, atol=1e-6)
    with pytest.raises(ValueError, match="holds only a tokenizer with a random stand-in model"):
        models.load_embedder(ServerConfig(model="bundled", device="cpu"))
