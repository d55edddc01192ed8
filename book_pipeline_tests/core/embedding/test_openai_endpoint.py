"""An OpenAI-compatible endpoint through the openai client, against the loopback server."""

import numpy as np
import pytest

from book_pipeline.core.embedding.base import EmbeddingEndpointError
from book_pipeline.core.embedding.costs import count_tokens
from book_pipeline.core.embedding.openai_endpoint import OpenAIEmbedder
from book_pipeline.defs.resources import EmbedderResource
from book_pipeline_tests.support.openai_compatible_server import (
    EmbeddingsServerState,
    embeddings_server,
    text_vector,
)

TEXTS = [
    "A haunted manor where ghosts walk the corridors at midnight.",
    "An abandoned mansion full of spirits and creaking doors.",
    "A starship crew explores a distant galaxy and meets an alien species.",
]


def test_openai_provider_batches_and_keeps_order() -> None:
    state = EmbeddingsServerState(dimensions=12)
    texts = [f"book number {i}" for i in range(7)]
    with embeddings_server(state) as base_url:
        embedder = OpenAIEmbedder(
            model="text-embedding-3-small", api_key="sk-test", base_url=base_url, batch_size=3
        )
        vectors = embedder.embed(texts)

    assert [len(request["input"]) for request in state.requests] == [3, 3, 1]
    assert {request["model"] for request in state.requests} == {"text-embedding-3-small"}
    expected = np.asarray([text_vector(text, 12) for text in texts])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5)
    assert state.authorization_headers[0] == "Bearer sk-test"


def test_openai_provider_retries_429_and_5xx() -> None:
    state = EmbeddingsServerState(failures_to_inject=[429, 500])
    with embeddings_server(state) as base_url:
        embedder = OpenAIEmbedder(api_key="sk-test", base_url=base_url, max_retries=3)
        vectors = embedder.embed(TEXTS)

    assert state.statuses == [429, 500, 200]
    assert vectors.shape == (3, 12)


def test_openai_provider_gives_up_after_its_retries() -> None:
    import openai

    state = EmbeddingsServerState(failures_to_inject=[503, 503, 503])
    with embeddings_server(state) as base_url:
        embedder = OpenAIEmbedder(api_key="sk-test", base_url=base_url, max_retries=2)
        with pytest.raises(EmbeddingEndpointError) as raised:
            embedder.embed(TEXTS)
    assert state.statuses == [503, 503, 503]
    message = str(raised.value)
    assert message.startswith(f"the embedding endpoint {base_url}/embeddings answered 503")
    assert raised.value.retryable  # the step retries take over
    assert isinstance(raised.value.__cause__, openai.InternalServerError)


def test_openai_provider_does_not_retry_what_cannot_change() -> None:
    state = EmbeddingsServerState(failures_to_inject=[400])
    with embeddings_server(state) as base_url:
        embedder = OpenAIEmbedder(api_key="sk-test", base_url=base_url, max_retries=2)
        with pytest.raises(EmbeddingEndpointError) as raised:
            embedder.embed(TEXTS)
    assert state.statuses == [400]
    assert not raised.value.retryable


def test_openai_provider_reports_every_error_answer() -> None:
    reported: list[str] = []
    state = EmbeddingsServerState(failures_to_inject=[429, 500])
    with embeddings_server(state) as base_url:
        embedder = OpenAIEmbedder(
            api_key="sk-test", base_url=base_url, max_retries=2, on_error_response=reported.append
        )
        embedder.embed(TEXTS)
    assert reported == [
        f"embedding endpoint {base_url}/embeddings answered 429 Too Many Requests",
        f"embedding endpoint {base_url}/embeddings answered 500 Internal Server Error",
    ]


def test_openai_provider_asks_for_configured_dimensions() -> None:
    state = EmbeddingsServerState()
    with embeddings_server(state) as base_url:
        resource = EmbedderResource(
            provider="openai",
            model="text-embedding-3-large",
            dimensions=5,
            openai_api_key="sk-test",
            openai_base_url=base_url,
        )
        embedder = resource.get_embedder()
        vectors = embedder.embed(TEXTS)

    assert embedder.dimension == 5
    assert vectors.shape == (3, 5)
    assert state.requests[0]["dimensions"] == 5
    assert state.requests[0]["model"] == "text-embedding-3-large"


def test_openai_provider_reports_the_tokens_it_was_billed() -> None:
    state = EmbeddingsServerState(dimensions=12)
    texts = [f"book number {i}" for i in range(7)]
    with embeddings_server(state) as base_url:
        embedder = OpenAIEmbedder(api_key="sk-test", base_url=base_url, batch_size=3)
        vectors, tokens = embedder.embed_with_usage(texts)

    assert vectors.shape == (7, 12)
    assert tokens == state.billed_tokens == count_tokens(texts) > 0
