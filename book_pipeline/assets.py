"""The book_embeddings asset: the Qdrant collection, built by the per-file fetch_data graph."""

import dagster as dg

from book_pipeline.ops import (
    create_vector_embeddings,
    list_book_description_files,
    load_embeddings_to_vector_db,
    transform_book_description_file,
)

BOOKS_GROUP = "books"


@dg.graph_asset(group_name=BOOKS_GROUP, kinds={"qdrant", "onnx", "openai"})
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
