"""Token-exact, distinct, deterministic passages under the bundled and custom tokenizers."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from embed_bench.core.payloads import (
    PassageError,
    PassageFactory,
    bundled_tokenizer_path,
    count_tokens,
    load_tokenizer,
)


@pytest.fixture(scope="module")
def factory() -> PassageFactory:
    return PassageFactory("", seed=7)


@pytest.mark.parametrize(("tokens", "count"), [(16, 64), (128, 32), (512, 16), (1024, 8), (8192, 4)])
def test_every_passage_has_exactly_t_tokens_without_special_tokens(factory, tokens, count):
    passages = factory.passages(count, tokens, stream=f"exact-{tokens}")
    assert len(passages) == count
    assert count_tokens(factory.tokenizer, passages) == [tokens] * count
    # An independent tokenizer instance (truncation off) agrees, and specials come on top.
    reference = Tokenizer.from_file(str(bundled_tokenizer_path()))
    reference.no_truncation()
    reference.no_padding()
    assert [len(e.ids) for e in reference.encode_batch(passages, add_special_tokens=False)] == [
        tokens
    ] * count
    assert [len(e.ids) for e in reference.encode_batch(passages)] == [tokens + 2] * count


def test_passages_are_distinct_across_requests_and_streams(factory):
    requests = [
        factory.passages(32, 16, stream=f"cell/w0/u{user}/r{number}")
        for user in range(4)
        for number in range(6)
    ]
    flat = [passage for request in requests for passage in request]
    assert len(flat) == 4 * 6 * 32
    assert len(set(flat)) == len(flat)


def test_same_seed_same_passages_other_seed_other_passages():
    first = PassageFactory("", seed=11).passages(8, 128, stream="s")
    again = PassageFactory("", seed=11).passages(8, 128, stream="s")
    other_seed = PassageFactory("", seed=12).passages(8, 128, stream="s")
    other_stream = PassageFactory("", seed=11).passages(8, 128, stream="t")
    assert first == again
    assert not set(first) & set(other_seed)
    assert not set(first) & set(other_stream)


def test_a_factory_never_repeats_itself_even_for_the_same_stream():
    factory = PassageFactory("", seed=3)
    first = factory.passages(4, 32, stream="same")
    second = factory.passages(4, 32, stream="same")
    assert not set(first) & set(second)
    assert count_tokens(factory.tokenizer, second) == [32] * 4


def test_tiny_passages_stay_distinct_until_the_space_runs_out():
    factory = PassageFactory("", seed=5)
    singles = factory.passages(200, 1, stream="one-token")
    assert len(set(singles)) == 200
    assert count_tokens(factory.tokenizer, singles) == [1] * 200


def test_bundled_tokenizer_truncation_is_switched_off():
    config = json.loads(bundled_tokenizer_path().read_text())
    assert config["truncation"]["max_length"] == 128  # the file itself would cap every count
    assert load_tokenizer("").truncation is None


def test_tokenizer_by_path_file_or_directory(tmp_path):
    copy = tmp_path / "tok" / "tokenizer.json"
    copy.parent.mkdir()
    copy.write_bytes(bundled_tokenizer_path().read_bytes())
    for spec in (str(copy), str(copy.parent)):
        passages = PassageFactory(spec, seed=1).passages(3, 100, stream="path")
        assert count_tokens(load_tokenizer(spec), passages) == [100] * 3


def test_bundled_means_the_bundled_tokenizer_as_for_the_model():
    assert load_tokenizer("bundled").get_vocab() == load_tokenizer("").get_vocab()


def test_a_hub_id_that_cannot_be_reached_fails_at_once_with_one_line(monkeypatch):
    from huggingface_hub import constants

    with socket.socket() as closed:  # a port where nothing listens: the hub "is down"
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    with pytest.raises(PassageError) as caught:
        load_tokenizer("example-org/not-cached-tokenizer")
    message = str(caught.value)
    assert f"cannot reach {endpoint} (Connection refused)" in message and "\n" not in message
    assert "--tokenizer bundled" in message


def test_a_hub_id_offline_says_so(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PassageError, match="not in the local cache and HF_HUB_OFFLINE is set"):
        load_tokenizer("example-org/another-uncached-tokenizer")


def test_missing_tokenizer_file_is_a_clear_error(tmp_path):
    with pytest.raises(PassageError, match="not found"):
        load_tokenizer(str(tmp_path / "nope" / "tokenizer.json"))


def _space_merging_tokenizer(path: Path) -> str:
    """A BPE trained without a pre-tokenizer: its tokens span spaces, so words do not add up."""
    rng = random.Random(0)
    words = PassageFactory("", seed=0).words[::40]
    corpus = [" ".join(rng.choices(words[:60], k=12)) for _ in range(400)]
    corpus += [" ".join(rng.choices(words, k=12)) for _ in range(400)]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1500, special_tokens=["[UNK]"]))
    tokenizer.save(str(path))
    return str(path)


def test_exact_even_when_the_tokenizer_merges_across_spaces(tmp_path):
    spec = _space_merging_tokenizer(tmp_path / "merging.json")
    factory = PassageFactory(spec, seed=2)
    naive = [" ".join(random.Random(n).choices(factory.words, k=40)) for n in range(20)]
    assert count_tokens(factory.tokenizer, naive) != [40] * 20  # counting words would be wrong here
    for tokens in (16, 128, 512):
        passages = factory.passages(6, tokens, stream=f"merge-{tokens}")
        assert count_tokens(factory.tokenizer, passages) == [tokens] * 6
        assert len(set(passages)) == 6


def _trained(path: Path, family: str) -> str:
    """Small stand-ins for the hub tokenizers of the backends: SentencePiece-style Unigram with
    Metaspace ("▁word", as XLM-R in jina-embeddings-v3) and byte-level BPE ("Ġword", as GPT-2)."""
    rng = random.Random(1)
    words = PassageFactory("", seed=0).words[::20]
    corpus = [" ".join(rng.choices(words, k=16)) for _ in range(600)]
    if family == "metaspace-unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=2000, special_tokens=["<unk>"], unk_token="<unk>")
    else:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(path))
    return str(path)


@pytest.mark.parametrize("family", ["metaspace-unigram", "byte-level-bpe"])
def test_exact_under_sentencepiece_and_byte_level_tokenizers(tmp_path, family):
    spec = _trained(tmp_path / f"{family}.json", family)
    factory = PassageFactory(spec, seed=4)
    assert len(factory.words) >= 64
    for tokens in (16, 512):
        passages = factory.passages(8, tokens, stream=f"{family}-{tokens}")
        assert count_tokens(factory.tokenizer, passages) == [tokens] * 8
        assert len(set(passages)) == 8


def test_bad_arguments():
    factory = PassageFactory("", seed=0)
    with pytest.raises(ValueError):
        factory.passages(1, 0, stream="x")
