"""Local models on fastembed: the bundled default, a model folder in sentence-transformers'
layout, or a model fastembed supports by name, downloaded once from the Hugging Face hub."""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from book_pipeline.core.embedding.base import (
    EmbeddingModelError,
    normalize_rows,
    root_cause,
    short_text,
)
from book_pipeline.core.embedding.bundled import (
    LOCAL_MODEL_DIMENSION,
    LOCAL_MODEL_MAX_TOKENS,
    LOCAL_MODEL_NAME,
    bundled_model_files,
    file_sha256,
    is_bundled_model,
)

if TYPE_CHECKING:
    import fastembed

LOCAL_BATCH_SIZE = 16
# What the bundled tokenizer.json lacks and fastembed reads from tokenizer_config.json.
_LOCAL_TOKENIZER_CONFIG = {"model_max_length": LOCAL_MODEL_MAX_TOKENS, "pad_token": "[PAD]"}

# sentence-transformers' description of a model folder: its modules, and how tokens are pooled.
_SENTENCE_TRANSFORMERS_POOLINGS = {
    "pooling_mode_mean_tokens": "MEAN",
    "pooling_mode_cls_token": "CLS",
    "pooling_mode_lasttoken": "LAST_TOKEN",
}
_RUNNABLE_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}
_NORMALIZE_MODULE = "sentence_transformers.models.Normalize"


class FastEmbedEmbedder:
    """A local fastembed model. Texts of similar length share a batch, so little compute goes
    to padding (fastembed batches in the order it is given)."""

    def __init__(
        self,
        model: fastembed.TextEmbedding,
        model_name: str,
        dimension: int,
        batch_size: int = LOCAL_BATCH_SIZE,
    ) -> None:
        self._model = model
        self.model_name = model_name
        self.dimension = dimension
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda position: len(texts[position]))
        rows = self._model.embed([texts[position] for position in order], self._batch_size)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Normalised here too: not every fastembed model normalises its output.
        vectors[order] = normalize_rows(np.vstack(list(rows)))
        return vectors


_LOADING = threading.Lock()


def shared_local_embedder(
    model: str | None = None, cache_dir: Path | None = None
) -> FastEmbedEmbedder:
    """The local model, loaded once per process (loading it costs more than embedding a file's
    worth of books; docs/benchmarks.md): the bundled default, a folder holding a model's files,
    or a fastembed model by name, downloaded into `cache_dir` (fastembed's own default when None)
    on first use."""
    with _LOADING:
        if is_bundled_model(model):
            return _bundled_model()
        folder = Path(model).expanduser()
        if folder.is_dir():
            return _folder_model(folder.resolve())
        if folder.is_absolute() or model.startswith((".", "~")):
            raise EmbeddingModelError(
                f"embedding model {model!r}: no such folder. Name a folder holding a model's "
                f"files, a model fastembed supports, or {_BUNDLED_WAY_OUT}"
            )
        from fastembed.common.utils import define_cache_dir

        return _named_model(model, define_cache_dir(str(cache_dir) if cache_dir else None))


_BUNDLED_WAY_OUT = (
    f"unset BOOK_PIPELINE_EMBEDDING_MODEL to use the bundled {LOCAL_MODEL_NAME!r}, "
    "which needs no network"
)


@functools.cache
def _bundled_model() -> FastEmbedEmbedder:
    weights, tokenizer = bundled_model_files()
    _register_custom_model(
        LOCAL_MODEL_NAME, "MEAN", True, "model.onnx", LOCAL_MODEL_DIMENSION, weights.parent
    )
    # fastembed reads a model from one folder, and the two packages' files are only read while
    # the model loads: a throwaway folder of links to them is enough.
    with tempfile.TemporaryDirectory(prefix="book_pipeline_model_") as scratch:
        folder = Path(scratch)
        (folder / "model.onnx").symlink_to(weights)
        (folder / "tokenizer.json").symlink_to(tokenizer)
        (folder / "tokenizer_config.json").write_text(json.dumps(_LOCAL_TOKENIZER_CONFIG))
        model = _fastembed_model(LOCAL_MODEL_NAME, specific_model_path=str(folder))
    return FastEmbedEmbedder(model, LOCAL_MODEL_NAME, LOCAL_MODEL_DIMENSION)


@functools.cache
def _folder_model(folder: Path) -> FastEmbedEmbedder:
    """A model folder in sentence-transformers' layout with an ONNX export of the transformer:
    what `huggingface-cli download sentence-transformers/<model>` fetches, for example.

    Named by the folder and a checksum of what makes its vectors: the same files give the same
    name on any machine, and other files never share a collection or cache entries with them.
    """
    model_file = _onnx_file(folder)
    pooling, normalization = _sentence_transformers_pooling(folder)
    for required in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        if not (folder / required).is_file():
            raise EmbeddingModelError(f"model folder {folder} has no {required}")
    config = json.loads((folder / "config.json").read_text())
    if "hidden_size" not in config:
        raise EmbeddingModelError(f"{folder / 'config.json'} names no hidden_size")
    checksums = [file_sha256(folder / file) for file in (model_file, "tokenizer.json")]
    tokenizer_config = (folder / "tokenizer_config.json").read_text()
    recipe = json.dumps([checksums, tokenizer_config, pooling, normalization])
    digest = hashlib.sha256(recipe.encode()).hexdigest()
    name = f"{folder.name}@sha256:{digest[:12]}"
    dimension = int(config["hidden_size"])
    _register_custom_model(name, pooling, normalization, model_file, dimension, folder)
    model = _fastembed_model(name, specific_model_path=str(folder))
    embedder = FastEmbedEmbedder(model, name, dimension)
    probed = np.vstack(list(model.embed(["dimension probe"]))).shape[1]
    if probed != dimension:
        raise EmbeddingModelError(
            f"model folder {folder}: config.json says {dimension} dimensions, the model "
            f"makes {probed}"
        )
    return embedder


def _onnx_file(folder: Path) -> str:
    for usual in ("model.onnx", "onnx/model.onnx"):
        if (folder / usual).is_file():
            return usual
    found = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.onnx"))
    if len(found) != 1:
        raise EmbeddingModelError(
            f"model folder {folder} holds {len(found)} .onnx files "
            f"({', '.join(found) or 'none'}); name the one to use model.onnx"
        )
    return found[0]


def _sentence_transformers_pooling(folder: Path) -> tuple[str, bool]:
    """How the token vectors become one (fastembed's pooling name) and whether it is normalised,
    from the folder's modules.json and its Pooling module's config."""
    if not (folder / "modules.json").is_file():
        raise EmbeddingModelError(
            f"model folder {folder} has no modules.json: a model folder is read in "
            "sentence-transformers' layout (modules.json, 1_Pooling/config.json, config.json, "
            "tokenizer.json, tokenizer_config.json and an ONNX export, e.g. onnx/model.onnx)"
        )
    modules = json.loads((folder / "modules.json").read_text())
    unrunnable = [module["type"] for module in modules if module["type"] not in _RUNNABLE_MODULES]
    if unrunnable:
        raise EmbeddingModelError(
            f"model folder {folder}: its {', '.join(unrunnable)} module(s) cannot run on "
            "fastembed, only a transformer followed by pooling and normalisation"
        )
    pooling_paths = [module["path"] for module in modules if module["type"].endswith("Pooling")]
    pooling_config = {}
    if len(pooling_paths) == 1:
        pooling_config = json.loads((folder / pooling_paths[0] / "config.json").read_text())
    modes = [
        mode for key, mode in _SENTENCE_TRANSFORMERS_POOLINGS.items() if pooling_config.get(key)
    ]
    if len(modes) != 1:
        raise EmbeddingModelError(
            f"model folder {folder}: modules.json must name one Pooling module whose "
            f"config.json chooses one of {', '.join(_SENTENCE_TRANSFORMERS_POOLINGS)}"
        )
    return modes[0], any(module["type"] == _NORMALIZE_MODULE for module in modules)


def _fastembed_description(name: str) -> dict[str, Any] | None:
    from fastembed import TextEmbedding

    return next(
        (
            description
            for description in TextEmbedding.list_supported_models()
            if description["model"].lower() == name.lower()
        ),
        None,
    )


def _register_custom_model(
    name: str, pooling: str, normalization: bool, model_file: str, dimension: int, source: Path
) -> None:
    """Tell fastembed how to run a model it does not list (once per process and name)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    if _fastembed_description(name) is None:
        TextEmbedding.add_custom_model(
            name,
            pooling=PoolingType(pooling),
            normalization=normalization,
            sources=ModelSource(url=source.as_uri()),
            dim=dimension,
            model_file=model_file,
        )


def _fastembed_model(name: str, **options: Any) -> fastembed.TextEmbedding:
    from fastembed import TextEmbedding

    try:
        return TextEmbedding(name, **options)
    # onnxruntime and tokenizers raise their own types for a damaged or foreign file.
    except Exception as error:
        raise EmbeddingModelError(
            f"fastembed could not load the embedding model {name!r}: {short_text(str(error))}"
        ) from error


@functools.cache
def _named_model(name: str, cache_dir: Path) -> FastEmbedEmbedder:
    """A model fastembed supports, from `cache_dir`, downloaded there from the Hugging Face hub
    (or the mirror HF_ENDPOINT names) when it is not yet there."""
    description = _fastembed_description(name)
    if description is None:
        raise EmbeddingModelError(
            f"embedding model {name!r}: no folder of that name exists, and fastembed supports "
            "no model of that name (TextEmbedding.list_supported_models() lists them, e.g. "
            f"'BAAI/bge-small-en-v1.5'). Name a supported model or a folder holding a model's "
            f"files, or {_BUNDLED_WAY_OUT}"
        )
    canonical = description["model"]
    if not _is_cached(description, cache_dir):
        _download(description, cache_dir)
    model = _fastembed_model(canonical, cache_dir=str(cache_dir), local_files_only=True)
    return FastEmbedEmbedder(model, canonical, description["dim"])


def _model_files(description: dict[str, Any]) -> list[str]:
    return [description["model_file"], *description["additional_files"]]


def _is_cached(description: dict[str, Any], cache_dir: Path) -> bool:
    from fastembed import TextEmbedding

    try:
        snapshot = TextEmbedding.download_files_from_huggingface(
            description["sources"]["hf"],
            cache_dir=str(cache_dir),
            extra_patterns=_model_files(description),
            local_files_only=True,
        )
    except (OSError, ValueError):  # huggingface_hub: not in the cache
        return False
    return all((Path(snapshot) / file).is_file() for file in _model_files(description))


def _download(description: dict[str, Any], cache_dir: Path) -> None:
    """One attempt, failing within seconds: fastembed's own loop retries for far longer
    (docs/benchmarks.md), and a machine with no route to the hub gains nothing from waiting."""
    from fastembed import TextEmbedding
    from huggingface_hub import constants

    repository = description["sources"]["hf"]
    try:
        TextEmbedding.download_files_from_huggingface(
            repository,
            cache_dir=str(cache_dir),
            extra_patterns=_model_files(description),
        )
    # Whatever stopped it (no network, offline mode, a missing file, a full disk), the way out is
    # the same, and the cause is chained and named.
    except Exception as error:
        name = description["model"]
        raise EmbeddingModelError(
            f"embedding model {name!r} is not in the model cache ({cache_dir}) and could not be "
            f"downloaded from {constants.ENDPOINT}/{repository} ({short_text(root_cause(error))}). "
            f"Either download it into that folder where the hub can be reached: python -c "
            f"\"from fastembed import TextEmbedding; TextEmbedding('{name}', "
            f"cache_dir='{cache_dir}')\" (or copy that folder from a machine that did); "
            f"or {_BUNDLED_WAY_OUT}"
        ) from error
