"""BM25 keyword vectors: what a book's words become, and what a query's do."""

import pytest

from book_pipeline.core.books.parsing import parse_book_text
from book_pipeline.core.store.keyword_vectors import (
    book_keyword_vector,
    document_keyword_vector,
    query_keyword_vector,
)

[DRACULA] = parse_book_text(
    "501 ::: Dracula (1897) ::: Bram Stoker ::: A count travels to England.\n", "gothic.txt"
)


def test_the_title_author_and_description_are_all_in_a_books_vector() -> None:
    tokens = set(book_keyword_vector(DRACULA).indices)

    for word in ("Dracula", "Stoker", "Bram", "England", "count"):
        assert set(query_keyword_vector(word).indices) <= tokens, word


def test_words_are_stemmed_lowercased_and_stop_words_dropped() -> None:
    assert query_keyword_vector("Travels").indices == query_keyword_vector("travel").indices
    assert query_keyword_vector("the of a").indices == []
    vector = query_keyword_vector("vampire VAMPIRES count")
    assert len(vector.indices) == 2 and vector.values == [1.0, 1.0]


def test_a_repeated_word_weighs_more_but_saturates() -> None:
    once = document_keyword_vector("vampire castle")
    thrice = document_keyword_vector("vampire vampire vampire castle")
    [vampire] = query_keyword_vector("vampire").indices

    weight_once = once.values[once.indices.index(vampire)]
    weight_thrice = thrice.values[thrice.indices.index(vampire)]
    assert weight_once < weight_thrice < 3 * weight_once


@pytest.mark.parametrize(
    ("typed", "printed"),
    [("bronte", "Charlotte Brontë"), ("garcia marquez", "Gabriel García Márquez"),
     ("stanislaw lem", "Stanisław Lem"), ("MACHIAVELLI", "Niccolò Machiavelli")],
)  # fmt: skip
def test_accents_and_case_are_folded_in_books_and_queries_alike(typed: str, printed: str) -> None:
    stored = set(document_keyword_vector(printed).indices)
    assert set(query_keyword_vector(typed).indices) <= stored
    assert set(query_keyword_vector(typed).indices) <= set(query_keyword_vector(printed).indices)
