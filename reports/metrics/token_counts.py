"""Which token count a figure uses, and whether a server's count can be trusted beside the client's.

The client counts every request's tokens under the run's tokenizer (``tokens_client`` = batch x
passage tokens: exact, the payloads are token-exact). The server reports its own usage
(``tokens_server``), which is what a per-token API bills but not what it embedded for everyone
alike: special tokens are added per input, other tokenizers split differently, a server that
truncates embeds fewer, and some servers count characters (Infinity, unless started with
``--lengths-via-tokenize``). Throughput and every comparison between runs therefore use the client
count unless ``--count-tokens server`` is given; a server count that strays beyond the special tokens
is named with its likely cause.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

CLIENT = "client"
SERVER = "server"
COUNTS = (CLIENT, SERVER)
TOKEN_COLUMNS = {CLIENT: "tokens_client", SERVER: "tokens_server"}
COUNT_DESCRIPTIONS = {
    CLIENT: "client count (batch x passage tokens under the run's tokenizer)",
    SERVER: "server count (the usage each response reported; the client count where it reported none)",
}
SPECIAL_TOKENS_PER_INPUT = 4  # BERT adds [CLS] [SEP], XLM-R <s> </s>; a little headroom
CHARACTERS_RATIO = 2.5  # English text runs at about 4-5 characters per token
TRUNCATION_SPREAD = 0.05  # per-input server counts this close together across lengths: a cap


@dataclass(frozen=True)
class TokenCountCheck:
    """How a run's server-reported usage compares with the client's count, over successful requests
    that reported usage. ``cause`` is None when the two agree within special tokens."""

    requests_with_usage: int
    tokens_client: float
    tokens_server: float
    extra_per_input: float  # (server - client) / inputs, over all such requests
    cause: str | None

    @property
    def ratio(self) -> float:
        return self.tokens_server / self.tokens_client if self.tokens_client else float("nan")


def _per_input(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cell: passage tokens and the server's mean count per input."""
    grouped = frame.groupby("cell").agg(
        passage_tokens=("passage_tokens", "first"),
        server=("tokens_server", "sum"),
        inputs=("batch_size", "sum"),
    )
    grouped["server_per_input"] = grouped["server"] / grouped["inputs"]
    return grouped


def likely_cause(frame: pd.DataFrame) -> str | None:
    """The likely reason a server's count strays from the client's, or None when it does not.

    Counts within 0..``SPECIAL_TOKENS_PER_INPUT`` extra tokens per input agree. Far more than the
    tokens sent (``CHARACTERS_RATIO`` x) means characters. Fewer than sent, capped at one value
    across the lengths that exceed it, means truncation at the model's limit. Anything else is a
    different tokenizer."""
    cells = _per_input(frame)
    extra = cells["server_per_input"] - cells["passage_tokens"]
    if ((extra >= 0) & (extra <= SPECIAL_TOKENS_PER_INPUT)).all():
        return None
    if (cells["server_per_input"] >= CHARACTERS_RATIO * cells["passage_tokens"]).all():
        return (
            "the server counts characters, not tokens (Infinity does unless started with "
            "--lengths-via-tokenize)"
        )
    short = cells[extra < 0]
    if len(short):
        capped = cells.loc[cells["passage_tokens"] >= short["passage_tokens"].min(), "server_per_input"]
        if len(capped) > 1 and capped.max() - capped.min() <= TRUNCATION_SPREAD * capped.max():
            return (
                f"truncation at the model's limit: the server embedded about {capped.max():,.0f} tokens "
                f"per input whenever {short['passage_tokens'].min():,} or more were sent"
            )
    return "a different tokenizer on the server (its count differs from the run's tokenizer beyond special tokens)"


def token_count_check(measured: pd.DataFrame) -> TokenCountCheck | None:
    """Over successful measured records that carry a server count; None when none does."""
    reported = measured[measured["ok"] & measured["tokens_server"].notna()]
    if reported.empty:
        return None
    client, server = float(reported["tokens_client"].sum()), float(reported["tokens_server"].sum())
    return TokenCountCheck(
        requests_with_usage=len(reported),
        tokens_client=client,
        tokens_server=server,
        extra_per_input=(server - client) / float(reported["batch_size"].sum()),
        cause=likely_cause(reported),
    )


def counted_tokens(frame: pd.DataFrame, count: str) -> pd.Series:
    """Each record's tokens under ``count``; the server count falls back to the client's where the
    server reported none."""
    if count == SERVER:
        return frame["tokens_server"].fillna(frame["tokens_client"])
    return frame["tokens_client"]
