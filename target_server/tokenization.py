"""Text to token ids, as the model's own tokenizer and prompts give them, without the model.

Kept apart from the embedder (and free of torch) because tokenization runs wherever requests are
parsed: on the request threads of the one server process, or in each front-end process of
``serve --frontends N`` (target_server.frontend), which receives a :class:`TextTokenizer` from the
model process and never loads the model's weights. A TextTokenizer pickles to its tokenizer's
serialized form, its prompts and limits, so the copy a front end rebuilds gives the same ids.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any


class InputTooLong(ValueError):
    """An input over the model's limit while the client asked not to truncate."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(
            f"input {index} has {tokens} tokens, over the model's limit of {limit}; "
            "shorten it or send truncate: true"
        )
        self.index, self.tokens, self.limit = index, tokens, limit

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.index, self.tokens, self.limit)


class UnknownTask(ValueError):
    """A task name the model does not define."""


class TextTokenizer:
    """A model's tokenizer, prompts and input limit: thread-safe ``tokenize`` for request threads.

    Fast tokenizers are Rust objects that must not be re-configured concurrently ("Already
    borrowed"), so two clones are configured once: truncating and not. Slow ones take a lock.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_input_tokens: int,
        prompts: Mapping[str, str],
        default_prompt: str,
        tasks: tuple[str, ...] | None,
    ) -> None:
        self.max_input_tokens = max_input_tokens
        self.prompts = dict(prompts)
        self.default_prompt = default_prompt
        self.tasks = tasks
        if getattr(tokenizer, "is_fast", False):
            self._fast_json: str | None = tokenizer.backend_tokenizer.to_str()
            self._slow = None
        else:
            self._fast_json, self._slow = None, tokenizer
        self._configure()

    def _configure(self) -> None:
        if self._fast_json is not None:
            from tokenizers import Tokenizer

            self._truncating = Tokenizer.from_str(self._fast_json)
            self._truncating.no_padding()
            self._truncating.enable_truncation(self.max_input_tokens)
            self._full = Tokenizer.from_str(self._fast_json)
            self._full.no_padding()
            self._full.no_truncation()
        else:
            self._slow_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """What a front end needs to rebuild it: the serialized fast tokenizer (or the slow one), the
        prompts and the limit; never the configured Rust objects, which do not pickle."""
        return {
            key: getattr(self, key)
            for key in ("max_input_tokens", "prompts", "default_prompt", "tasks", "_fast_json", "_slow")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._configure()

    def prompt_for(self, task: str | None) -> str:
        if task is None:
            return self.default_prompt
        if self.tasks is not None and task not in self.tasks:
            raise UnknownTask(f"unknown task {task!r}; this model knows {', '.join(self.tasks)}")
        return self.prompts.get(task, self.default_prompt)

    def tokenize(
        self, texts: Sequence[str], truncate: bool = True, task: str | None = None
    ) -> list[list[int]]:
        """Token ids with special tokens, truncated to the model's limit (or InputTooLong if not allowed)."""
        prompt = self.prompt_for(task)
        texts = [prompt + text for text in texts] if prompt else list(texts)
        if self._slow is not None:
            with self._slow_lock:
                ids = self._slow(
                    texts,
                    add_special_tokens=True,
                    truncation=truncate,
                    max_length=self.max_input_tokens if truncate else None,
                )["input_ids"]
        else:
            encoder = self._truncating if truncate else self._full
            ids = [encoding.ids for encoding in encoder.encode_batch(texts, add_special_tokens=True)]
        if not truncate:
            for index, row in enumerate(ids):
                if len(row) > self.max_input_tokens:
                    raise InputTooLong(index, len(row), self.max_input_tokens)
        return ids
