"""The bundled model for a search's few words, without importing fastembed.

`book-pipeline search` embeds one query and exits. Through fastembed that costs its package
import (its download, image and sparse-model machinery come with it, whatever the model) before
the model's own load, half the command's wall time (bench/cli_benchmark.py). This runs the
same ONNX file with the same tokenizer settings on onnxruntime and tokenizers, the two
libraries fastembed runs it on, so the vectors are fastembed's to float32 rounding
(book_pipeline_tests/core/embedding/test_query.py compares them). The pipeline, which embeds
thousands of texts in a process that has paid for Dagster anyway, keeps fastembed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from book_pipeline.core.embedding.base import EmbeddingModelError, normalize_rows
from book_pipeline.core.embedding.bundled import (
    LOCAL_MODEL_DIMENSION,
    LOCAL_MODEL_MAX_TOKENS,
    LOCAL_MODEL_NAME,
    bundled_model_files,
)


class BundledQueryEmbedder:
    """all-MiniLM-L6-v2 int8 (the bundled default) for a few texts, each run on its own."""

    model_name = LOCAL_MODEL_NAME
    dimension = LOCAL_MODEL_DIMENSION

    def __init__(self) -> None:
        import onnxruntime
        import tokenizers

        weights, tokenizer_file = bundled_model_files()
        # fastembed's session options: all graph optimisations, the default thread pools.
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = onnxruntime.InferenceSession(
                str(weights), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        # onnxruntime and tokenizers raise their own types for a file they cannot read.
        except Exception as error:
            raise EmbeddingModelError(
                f"could not load the bundled embedding model {LOCAL_MODEL_NAME!r}: {error}"
            ) from error
        # One text per run needs no padding; truncation is fastembed's, at the model's length.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(LOCAL_MODEL_MAX_TOKENS, direction="right")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row] = self._embed_one(text)
        return vectors

    def _embed_one(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text)
        input_ids = np.array([encoding.ids], dtype=np.int64)
        attention_mask = np.array([encoding.attention_mask], dtype=np.int64)
        [token_vectors] = self._session.run(
            ["last_hidden_state"],
            {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": np.zeros_like(input_ids),
            },
        )
        # Mean pooling over the real tokens, summed in float64 as fastembed does.
        pooled = token_vectors.sum(axis=1, dtype=np.float64) / attention_mask.sum()
        return normalize_rows(pooled)[0]
