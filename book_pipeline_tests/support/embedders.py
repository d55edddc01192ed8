"""Vectors and embedders for tests that must know what was embedded."""

import numpy as np

from book_pipeline.core.embedding import shared_local_embedder


def unit_vectors(count: int, dimension: int, seed: int = 0) -> np.ndarray:
    """Random directions: vectors that say nothing about the books they are stored for."""
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class CountingEmbedder:
    """The real local model, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self._model = shared_local_embedder()
        self.model_name = self._model.model_name
        self.dimension = self._model.dimension
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self._model.embed(texts)
