"""``--attention packed``: the passages' tokens end to end, attention per passage, no compute on padding.

Parity is against the padded path (sentence-transformers' own forward through the same model) on
the bundled BERT model and on a small XLM-RoBERTa of the synthetic kind, for both attention
kernels; the batcher's budgets and metrics count real tokens; a model or setting it cannot serve is
refused with the reason.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from target_server import create_app, service_of
from target_server.batching import cut_batches
from target_server.config import ConfigError, ServerConfig
from target_server.embedder import BUNDLED_MODEL_ID, SentenceTransformerEmbedder
from target_server.packed import KERNELS, PackedBatch, PackedEmbedder, PackedEncoder, packing_refusal
from target_server.synthetic import SyntheticShape, build_shape
from tests.target_server.conftest import mixed_texts, sample, scrape
from tests.target_server.test_length_grouping import entries_of, lengths_of

SMALL_XLM_R = SyntheticShape(
    architecture="xlm-roberta",
    layers=2,
    hidden=64,
    heads=4,
    ffn=128,
    positions=514,
    vocab=30_522,
    max_input_tokens=512,
    pooling="mean",
    real_model="a two-layer XLM-RoBERTa for tests",
)
SMALL_BERT_CLS = dataclasses.replace(
    SMALL_XLM_R,
    architecture="bert",
    positions=512,
    pooling="cls",
    real_model="a two-layer BERT with CLS pooling for tests",
)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def batch_of(embedder: SentenceTransformerEmbedder, lengths: list[int]) -> list[list[int]]:
    """Token ids of exactly these lengths (special tokens included), from real text."""
    ids = embedder.tokenize(["the passage to embed " * 200])[0]
    return [ids[: n - 1] + ids[-1:] for n in lengths]


# Unlike lengths in no order, runs of one length, a single-token-plus-specials passage, the model's limit.
LENGTHS = [37, 2, 128, 128, 128, 9, 256, 60, 60, 3, 201, 17]


def test_a_packed_batch_holds_each_passage_once_with_its_own_positions() -> None:
    packed = PackedBatch.of([[5, 6, 7], [8], [9, 10, 11], [12, 13, 14], [15, 16]])
    assert packed.input_ids.tolist() == list(range(5, 17))
    assert packed.offsets.tolist() == [0, 3, 4, 7, 10, 12]
    assert packed.positions.tolist() == [0, 1, 2, 0, 0, 1, 2, 0, 1, 2, 0, 1]
    assert packed.lengths.tolist() == [3, 1, 3, 3, 2]
    assert packed.longest == 3
    # (first token, passages, length): the two 3-token passages in a row make one run.
    assert packed.runs == ((0, 1, 3), (3, 1, 1), (4, 2, 3), (10, 1, 2))


@pytest.mark.parametrize("kernel", KERNELS)
def test_packed_vectors_match_the_padded_ones_on_the_bundled_model(bundled_model, kernel: str) -> None:
    padded = SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID)
    packed = PackedEmbedder(bundled_model, BUNDLED_MODEL_ID, kernel=kernel)
    batch = batch_of(padded, LENGTHS)
    assert [len(ids) for ids in batch] == LENGTHS
    expected, got = padded.embed(batch), packed.embed(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert cosines(expected, got).min() >= 0.999999
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # Each passage alone gives the same vector: no passage sees another's tokens. (The runs kernel
    # groups passages of one length into one call, where a leak could hide; nested has no groups.)
    if kernel == "runs":
        alone = np.stack([packed.embed([ids])[0] for ids in batch])
        np.testing.assert_allclose(alone, got, atol=2e-6)


@pytest.mark.parametrize("shape", [SMALL_XLM_R, SMALL_BERT_CLS], ids=["xlm-roberta-mean", "bert-cls"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_packed_vectors_match_on_other_architectures_and_poolings(shape: SyntheticShape, kernel: str) -> None:
    model, _ = build_shape(shape, "cpu", {})
    model.eval()
    padded = SentenceTransformerEmbedder(model, "small")
    packed = PackedEmbedder(model, "small", kernel=kernel)
    assert packed.encoder.position_offset == (1 if shape.architecture == "xlm-roberta" else 0)
    batch = batch_of(padded, LENGTHS)
    assert cosines(padded.embed(batch), packed.embed(batch)).min() >= 0.999999


def test_the_kernel_defaults_to_runs_on_the_cpu_and_info_names_it(bundled_model) -> None:
    embedder = PackedEmbedder(bundled_model, BUNDLED_MODEL_ID)
    assert embedder.encoder.kernel == "runs"
    assert embedder.info.attention == "packed (runs)"
    assert SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID).info.attention == "padded"
    with pytest.raises(ValueError, match="unknown packed attention kernel 'flash'"):
        PackedEncoder(bundled_model, "flash")


def test_cuda_takes_the_nested_kernel_only_where_a_probe_pass_runs(bundled_model) -> None:
    encoder = PackedEncoder(bundled_model)
    # The probe: a two-passage nested pass runs (here on the CPU, in float32), or it does not.
    assert encoder._nested_runs("cpu", torch.float32)
    assert not encoder._nested_runs("cpu", torch.int32)  # no SDPA kernel for it: refused, not raised
    assert encoder._default_kernel("cpu", torch.float32) == "runs"  # the slow math path is never the CPU's
    for runs, kernel in ((True, "nested"), (False, "runs")):
        encoder._nested_runs = lambda device, dtype, runs=runs: runs  # as the device's probe would answer
        assert encoder._default_kernel("cuda:0", torch.bfloat16) == kernel


def test_a_model_it_cannot_pack_is_refused_with_the_reason(bundled_model) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense

    assert packing_refusal(bundled_model) is None
    dense = Dense(in_features=384, out_features=16)
    with_dense = SentenceTransformer(modules=[bundled_model[0], bundled_model[1], dense], device="cpu")
    assert (
        packing_refusal(with_dense)
        == "it has modules after pooling (Dense); packed attention allows only Normalize"
    )
    with pytest.raises(ValueError, match="cannot run with --attention packed: it has modules after pooling"):
        PackedEmbedder(with_dense, "with-dense")
    config = bundled_model[0].auto_model.config
    original = config.model_type
    try:
        config.model_type = "mpnet"
        assert (
            packing_refusal(bundled_model)
            == "its architecture is 'mpnet'; packed attention knows bert, xlm-roberta"
        )
    finally:
        config.model_type = original
    # A model's own code that calls itself "bert" (as trust_remote_code models do) may attend otherwise.
    auto_model = bundled_model[0].auto_model
    own_class = auto_model.__class__
    try:
        auto_model.__class__ = type("OwnBertModel", (own_class,), {"__module__": "transformers_modules.own"})
        refusal = packing_refusal(bundled_model)
        assert refusal.startswith("its model class is transformers_modules.own.OwnBertModel")
    finally:
        auto_model.__class__ = own_class
    assert packing_refusal(bundled_model) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"attention": "jagged"}, "attention must be one of"),
        ({"attention": "packed", "engine": "onnx"}, "--attention packed runs in torch; --engine onnx"),
        ({"attention": "packed", "model": "null:384"}, "the null model has no attention to pack"),
    ],
)
def test_settings_that_cannot_pack_fail_at_start(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**settings).validate()


def test_a_packed_pass_fills_its_budget_with_real_tokens() -> None:
    lengths = [10] * 30 + [200] * 2
    # Padded, 4 x 200 = 800 > 512 padded tokens: the two long ones go in passes of two rows at most.
    assert all(max(b) * len(b) <= 512 for b in lengths_of(cut_batches(entries_of(lengths), 512)))
    # Packed: 30 x 10 + 200 = 500 real tokens fit; the rest starts the next pass.
    packed = lengths_of(cut_batches(entries_of(lengths), 512, split_cost_tokens=1, padded=False))
    assert packed == [[10] * 30 + [200], [200]]
    # A lone input over the budget still gets a pass.
    assert lengths_of(cut_batches(entries_of([600, 5]), 512, padded=False)) == [[600], [5]]


def test_the_server_serves_packed_passes_and_counts_no_padding(bundled_model) -> None:
    texts = mixed_texts(24, seed=3, max_words=120)
    apps = {
        name: create_app({"warmup": False}, embedder=embedder)
        for name, embedder in {
            "padded": SentenceTransformerEmbedder(bundled_model, BUNDLED_MODEL_ID),
            "packed": PackedEmbedder(bundled_model, BUNDLED_MODEL_ID),
        }.items()
    }
    try:
        vectors, metrics = {}, {}
        for name, app in apps.items():
            client = app.test_client()
            response = client.post("/v1/embeddings", json={"input": texts, "model": "x"})
            assert response.status_code == 200, response.get_data(as_text=True)
            vectors[name] = np.array([row["embedding"] for row in response.get_json()["data"]])
            assert client.get("/info").get_json()["attention"] == (
                "padded" if name == "padded" else "packed (runs)"
            )
            metrics[name] = scrape(client.get("/metrics").get_data(as_text=True))
        assert cosines(vectors["padded"], vectors["packed"]).min() >= 0.999999

        def tokens(name: str, family: str) -> float:
            return sample(metrics[name], f"{family}_sum")

        real = tokens("packed", "embed_batch_tokens")
        assert real == tokens("padded", "embed_batch_tokens") > 0
        assert tokens("packed", "embed_batch_padded_tokens") == real  # a packed pass computes no padding
        assert tokens("padded", "embed_batch_padded_tokens") > real  # the mix pads when padded
    finally:
        for app in apps.values():
            service_of(app).close()


def test_the_fused_projection_is_the_models_own_weights(bundled_model) -> None:
    encoder = PackedEncoder(bundled_model)
    layer = bundled_model[0].auto_model.encoder.layer[0].attention.self
    weight, bias = encoder.qkv[0]
    assert torch.equal(weight, torch.cat([layer.query.weight, layer.key.weight, layer.value.weight]))
    assert torch.equal(bias, torch.cat([layer.query.bias, layer.key.bias, layer.value.bias]))
