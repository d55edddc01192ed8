"""The bundled model for a search, run without fastembed: the pipeline's vectors, the same hits."""

import numpy as np
import pytest

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_DIMENSION, LOCAL_MODEL_NAME
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.embedding.query import BundledQueryEmbedder
from book_pipeline.core.search import search_books
from book_pipeline.core.settings import DEFAULT_COLLECTION
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline_tests.core.test_search import QUERIES
from book_pipeline_tests.support.runs import SampleLoad

SAMPLE_TEXTS = [
    book.embedding_text
    for path in sorted(SAMPLE_BOOKS_DIR.glob("*.txt"))
    for book in parse_book_file(path).books
]
# Past the model's 256 tokens, both cut at the same place.
LONG_TEXT = " ".join(f"word{number}" for number in range(600))


@pytest.fixture(scope="module")
def query_model() -> BundledQueryEmbedder:
    return BundledQueryEmbedder()


def test_texts_get_the_vectors_the_pipeline_gives_them(query_model: BundledQueryEmbedder) -> None:
    texts = [*SAMPLE_TEXTS, *(query for query, _ in QUERIES), "", "Ünïcödé — 書籍 🐳", LONG_TEXT]

    vectors = query_model.embed(texts)

    assert (query_model.model_name, query_model.dimension) == (LOCAL_MODEL_NAME, 384)
    assert vectors.shape == (len(texts), LOCAL_MODEL_DIMENSION) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, shared_local_embedder().embed(texts), rtol=0, atol=1e-7)


def test_a_long_query_is_cut_at_the_models_length(query_model: BundledQueryEmbedder) -> None:
    longer, long, short = query_model.embed([LONG_TEXT + " and more", LONG_TEXT, "word0 word1"])

    np.testing.assert_array_equal(longer, long)
    assert float(long @ short) < 0.99


def test_searches_find_the_same_books_with_the_same_scores(
    sample_load: SampleLoad, query_model: BundledQueryEmbedder
) -> None:
    with open_vector_store(DEFAULT_COLLECTION, sample_load.data_dir / "qdrant-edge") as store:
        for query, _ in QUERIES:
            direct = search_books(store, query_model, query, 5)
            pipeline = search_books(store, shared_local_embedder(), query, 5)

            assert [hit.title for hit in direct] == [hit.title for hit in pipeline]
            np.testing.assert_allclose(
                [hit.score for hit in direct], [hit.score for hit in pipeline], atol=1e-6
            )
