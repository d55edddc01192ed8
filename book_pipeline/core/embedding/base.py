"""What every embedder is, and how embedding fails: the protocol the pipeline, the retrieval check
and search rely on, whatever runs the model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


class EmbeddingModelError(RuntimeError):
    """The embedding model cannot be loaded or answered something unusable."""

    # Whether trying again later can help; the embed step is retried only when it can.
    retryable: bool = False


class EmbeddingEndpointError(EmbeddingModelError):
    """The embedding endpoint failed after the client's own retries; the message names it."""

    def __init__(self, message: str, endpoint: str, retryable: bool) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.retryable = retryable


class Embedder(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text, in order."""
        ...


@runtime_checkable
class UsageReportingEmbedder(Protocol):
    """An embedder paid by the token, which says how many each call was billed."""

    def embed_with_usage(self, texts: Sequence[str]) -> tuple[np.ndarray, int]: ...


class WrappedEmbedder:
    """An embedder that adds something around another (a cache, a memory): the model, and so
    the name and dimension, are the wrapped one's."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    @property
    def model_name(self) -> str:
        return self._embedder.model_name

    @property
    def dimension(self) -> int:
        # Asked only when needed: a remote model may answer it with a call of its own.
        return self._embedder.dimension


def batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def root_cause(error: BaseException) -> str:
    """The innermost error's text: "[Errno 111] Connection refused", not "Connection error."."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def short_text(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
