"""The book_embeddings asset: the Qdrant collection, built by the per-file fetch_data graph."""

import dagster as dg

from book_pipeline.ops import (
    create_vector_embeddings,
    list_book_description_files,
    load_embeddings_to_vector_db,
    transform_book_description_file,
)
from book_pipeline.resources import configured_embedder_provider

BOOKS_GROUP = "books"


def book_embeddings_kinds(embedder_provider: str) -> set[str]:
    """What the UI shows the asset runs on: Qdrant, and the embedder configured at load time
    (the local model is an ONNX model whichever runtime runs it)."""
    return {"qdrant", "openai" if embedder_provider == "openai" else "onnx"}


@dg.graph_asset(group_name=BOOKS_GROUP, kinds=book_embeddings_kinds(configured_embedder_provider()))
def book_embeddings():
    """Every book of the description files, embedded and searchable in Qdrant.

    One transform and one embed copy per file (`.map()`), collected into a single load.
    """
    embedded_files = (
        list_book_description_files()
        .map(transform_book_description_file)
        .map(create_vector_embeddings)
    )
    return load_embeddings_to_vector_db(embedded_files.collect())
