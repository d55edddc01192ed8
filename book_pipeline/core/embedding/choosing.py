"""The one place that picks the embedder a configuration names: the pipeline's resource, the
retrieval check, `book-pipeline search` and the benchmarks all come through here."""

from __future__ import annotations

from collections.abc import Callable

from book_pipeline.core.embedding.base import Embedder
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_NAME, is_bundled_model
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.embedding.openai_endpoint import OPENAI_DEFAULT_MODEL, OpenAIEmbedder
from book_pipeline.core.embedding.query import BundledQueryEmbedder
from book_pipeline.core.settings import EmbedderChoice


def choose_embedder(
    choice: EmbedderChoice,
    *,
    for_query: bool = False,
    on_error_response: Callable[[str], None] | None = None,
) -> Embedder:
    """The embedder `choice` names. `for_query`: a search's few words, for which the bundled
    model runs on onnxruntime directly (the same vectors, without fastembed's import); any
    other model is the pipeline's. `on_error_response` hears of every error answer of an
    endpoint, retried or not."""
    if choice.provider == "openai":
        return OpenAIEmbedder(
            model=choice.model or OPENAI_DEFAULT_MODEL,
            dimensions=choice.dimensions,
            api_key=choice.api_key,
            base_url=choice.base_url,
            max_retries=choice.max_retries,
            on_error_response=on_error_response,
        )
    if for_query and is_bundled_model(choice.model):
        return BundledQueryEmbedder()
    return shared_local_embedder(choice.model, choice.model_cache_dir.expanduser())


def configured_model_name(choice: EmbedderChoice) -> str:
    """The model a configuration names, without loading it: what an endpoint is asked for, or
    the local model's configured name (a model folder's full name adds its checksum)."""
    if choice.provider == "openai":
        return choice.model or OPENAI_DEFAULT_MODEL
    return choice.model or LOCAL_MODEL_NAME


def recorded_model_name(choice: EmbedderChoice) -> str:
    """The name a collection and the embedding cache know the configured model by: the
    configured name, except that a local model other than the bundled one is asked for its own
    (a folder's full name adds its checksum), which loads it."""
    if choice.provider == "openai" or is_bundled_model(choice.model):
        return configured_model_name(choice)
    return choose_embedder(choice).model_name
