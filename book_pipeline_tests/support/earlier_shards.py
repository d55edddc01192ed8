"""Shards as earlier releases left them, written with qdrant-edge directly (not through the
store, which only writes the current layout)."""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import qdrant_edge as edge

from book_pipeline.core.books.parsing import BookRecord
from book_pipeline.core.store.base import book_payload, book_point_id
from book_pipeline.core.store.edge_folder import MANIFEST_NAME
from book_pipeline.core.store.keyword_vectors import BM25_PARAMETERS, keyword_text

# Issue 18's sparse vector: BM25 tokens that kept their accents.
ISSUE_18_KEYWORD_VECTOR = "bm25"


def write_issue_18_shard(
    shard_path: Path, books: Sequence[BookRecord], vectors: np.ndarray, model_name: str
) -> None:
    """What a load of issue 18's release left: the dense vector and an IDF sparse vector "bm25"
    computed without ASCII folding, the payload indexes and the manifest."""
    unfolded = edge.Bm25(
        edge.Bm25Config(k=BM25_PARAMETERS.k, b=BM25_PARAMETERS.b, avg_len=BM25_PARAMETERS.avg_len)
    )
    shard = edge.EdgeShard.create(
        str(shard_path),
        edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=vectors.shape[1], distance=edge.Distance.Cosine),
            sparse_vectors={
                ISSUE_18_KEYWORD_VECTOR: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)
            },
        ),
    )
    for field in ("author", "source_file"):
        shard.update(edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Keyword))
    shard.update(edge.UpdateOperation.create_field_index("year", edge.PayloadSchemaType.Integer))
    points = []
    for book, vector in zip(books, vectors.tolist(), strict=True):
        keywords = unfolded.embed_document(keyword_text(book.title, book.author, book.description))
        points.append(
            edge.Point(
                book_point_id(book.source_file, book.index),
                {"": vector, ISSUE_18_KEYWORD_VECTOR: keywords},
                book_payload(book, "sha"),
            )
        )
    shard.update(edge.UpdateOperation.upsert_points(points))
    shard.flush()
    shard.close()
    manifest = {"embedding_model": model_name, "dimension": vectors.shape[1], "load_sequence": 3}
    (shard_path / MANIFEST_NAME).write_text(json.dumps(manifest))
