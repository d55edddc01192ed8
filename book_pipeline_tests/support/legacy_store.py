"""The previous version's embedded store (qdrant-client local mode), as its load left it."""

from pathlib import Path

from qdrant_client import QdrantClient, models

from book_pipeline.core.books.parsing import parse_book_text
from book_pipeline.core.settings import DEFAULT_COLLECTION
from book_pipeline.core.store.base import book_payload, book_point_id
from book_pipeline_tests.support.embedders import unit_vectors

MODEL = "model-a"
LEGACY_BOOKS = parse_book_text(
    "".join(f"{n} ::: Book {n} ({1700 + n}) ::: Author {n % 7} ::: On {n}.\n" for n in range(300)),
    "legacy.txt",
)
LEGACY_VECTORS = unit_vectors(len(LEGACY_BOOKS), 8, seed=5)


def write_legacy_store(path: Path, collection: str = DEFAULT_COLLECTION) -> None:
    """What the previous version's load left: a local-mode collection with the model recorded."""
    client = QdrantClient(path=str(path))
    client.create_collection(
        collection,
        vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE),
        metadata={"embedding_model": MODEL, "dimension": 8},
    )
    client.upsert(
        collection,
        points=[
            models.PointStruct(
                id=book_point_id(book.source_file, book.index),
                vector=vector.tolist(),
                payload=book_payload(book, "sha"),
            )
            for book, vector in zip(LEGACY_BOOKS, LEGACY_VECTORS, strict=True)
        ],
    )
    client.close()
