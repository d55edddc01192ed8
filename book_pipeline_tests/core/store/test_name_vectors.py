"""Title-and-author trigrams: folding, word boundaries, and the share of a query a book holds."""

import pytest

from book_pipeline.core.store.name_vectors import (
    document_name_vector,
    fold,
    query_name_vector,
    share_of_query_held,
    trigrams,
)


def share_held(query: str, title: str, author: str) -> float:
    """What the engines compute: the dot product of the query's and the book's vectors."""
    stored = set(document_name_vector(title, author).indices)
    vector = query_name_vector(query)
    return sum(w for i, w in zip(vector.indices, vector.values, strict=True) if i in stored)


def test_accents_case_and_undecomposed_letters_are_folded() -> None:
    assert fold("Charlotte Brontë") == "charlotte bronte"
    assert fold("Stanisław Lem, Søren, Straße") == "stanislaw lem, soren, strasse"
    assert trigrams("Lem") == {" le", "lem", "em "}


def test_a_whole_name_is_held_in_full_and_a_word_inside_another_is_not() -> None:
    assert share_held("Bronte", "Jane Eyre", "Charlotte Brontë") == pytest.approx(1.0)
    assert share_held("lem", "Solaris", "Stanisław Lem") == pytest.approx(1.0)
    assert share_held("lem", "The Problem of Pain", "C. S. Moore") < 0.7


@pytest.mark.parametrize(
    ("typed", "title", "author"),
    [("hemmingway", "The Old Man and the Sea", "Ernest Hemingway"),
     ("agatha cristie", "And Then There Were None", "Agatha Christie"),
     ("metamorphisis", "The Metamorphosis", "Franz Kafka"),
     ("dostoyevski", "Crime and Punishment", "Fyodor Dostoevsky")],
)  # fmt: skip
def test_a_letter_or_two_off_still_holds_more_than_half(
    typed: str, title: str, author: str
) -> None:
    assert share_held(typed, title, author) > 0.5


def test_a_descriptive_query_holds_little_of_any_title() -> None:
    query = "a sailor wrongly imprisoned escapes and takes his revenge"
    assert share_held(query, "The Count of Monte Cristo", "Alexandre Dumas") < 0.3


def test_a_query_without_letters_or_digits_has_no_trigrams() -> None:
    assert query_name_vector(" -- ! ").indices == []


def test_the_share_held_is_counted_word_by_word() -> None:
    # One wrong letter in a nine-letter name, then a title word missing from a long title.
    assert share_of_query_held("hemmingway", "The Sun Also Rises", "Ernest Hemingway") > 0.8
    assert share_of_query_held("gatsby parties", "The Great Gatsby", "F. Scott Fitzgerald") == 0.5
    # A sentence sharing a few words with a long title: a third of it, word by word.
    long_title = "Trends in incidence, treatment and survival of colorectal cancer patients"
    claim = "1-1% of colorectal cancer patients are diagnosed with regional or distant metastases"
    assert share_of_query_held(claim, long_title, "") == pytest.approx(4 / 13)
