"""Any OpenAI-compatible embeddings endpoint (OpenAI's own by default), through the openai
client."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from book_pipeline.core.embedding.base import (
    EmbeddingEndpointError,
    EmbeddingModelError,
    batches,
    normalize_rows,
    root_cause,
    short_text,
)
from book_pipeline.core.embedding.costs import count_tokens
from book_pipeline.core.settings import DEFAULT_OPENAI_MAX_RETRIES

if TYPE_CHECKING:
    import openai

OPENAI_DEFAULT_MODEL = "text-embedding-3-small"
# The embeddings endpoint takes at most 2048 inputs per request; smaller requests retry cheaper.
OPENAI_BATCH_SIZE = 256


# What the openai client itself retries: busy, rate limited, or a server error.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})


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
        max_retries: int = DEFAULT_OPENAI_MAX_RETRIES,
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
                f"({short_text(error.message)}){retried}",
                self.endpoint,
                retryable=retryable,
            ) from error
        except openai.APIConnectionError as error:
            raise EmbeddingEndpointError(
                f"the embedding endpoint {self.endpoint} could not be reached "
                f"({short_text(root_cause(error))}) after {self._max_retries} client retries",
                self.endpoint,
                retryable=True,
            ) from error


def _billed_tokens(response: Any, texts: list[str]) -> int:
    """The usage an answer reports; from an endpoint that reports none, the texts' count in
    OpenAI's tokenizer, rather than nothing (the run's cost and budget rest on it)."""
    tokens = getattr(getattr(response, "usage", None), "prompt_tokens", None)
    return tokens if isinstance(tokens, int) else count_tokens(texts)
