"""Vectors and embedders for tests that must know what was embedded."""

import json
from pathlib import Path

import numpy as np

from book_pipeline.core.embedding.bundled import bundled_model_files
from book_pipeline.core.embedding.local import shared_local_embedder


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


def sentence_transformers_folder(folder: Path, pooling: str = "mean_tokens") -> Path:
    """The bundled model laid out as `huggingface-cli download sentence-transformers/...` is."""
    weights, tokenizer = bundled_model_files()
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "model.onnx").symlink_to(weights)
    (folder / "tokenizer.json").symlink_to(tokenizer)
    (folder / "1_Pooling").mkdir()
    files = {
        "config.json": {"model_type": "bert", "hidden_size": 384},
        "tokenizer_config.json": {"model_max_length": 256, "pad_token": "[PAD]"},
        "modules.json": [
            {"path": path, "type": f"sentence_transformers.models.{module}"}
            for path, module in (("", "Transformer"), ("1_Pooling", "Pooling"), ("", "Normalize"))
        ],
        "1_Pooling/config.json": {"word_embedding_dimension": 384, f"pooling_mode_{pooling}": True},
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))
    return folder
